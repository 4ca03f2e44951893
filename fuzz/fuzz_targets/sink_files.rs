//! Fuzzes the two files a forwarder reads at start: its cursor file
//! (which a crash, a disk or a person may have damaged) and the AWS shared
//! credentials file.
//!
//! Input: the first byte picks the parser, the rest is the file.
//!
//! Checked: no panic; a cursor that parses writes back to a file that
//! parses to the same cursor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::sinks::cloudwatch::credentials::parse_credentials_file;
use ringtail::sinks::cursor::ForwarderCursor;

fuzz_target!(|data: &[u8]| {
    let Some((&which, file)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(c) = ForwarderCursor::parse(file) {
            assert_eq!(ForwarderCursor::parse(&c.to_bytes()), Ok(c));
        }
    } else {
        let text = String::from_utf8_lossy(file);
        for profile in ["default", "work"] {
            let _ = parse_credentials_file(&text, profile);
        }
    }
});
