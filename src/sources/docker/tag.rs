//! The `tag` log-opt: the subset of Go's `text/template` that Docker's
//! drivers use to name a container's log source.
//!
//! Docker renders `tag` with Go's `text/template` over its `logger.Info`
//! (`loggerutils.ParseLogTag`). ringtail takes the part people write:
//! literal text and actions that name one field, such as
//! `web/{{.Name}}/{{.ID}}`, with Go's spacing (`{{ .Name }}`) and trim
//! markers (`{{- .Name -}}` removes the white space next to the action).
//! Functions and pipelines (`{{.Name | upper}}`, `{{json .}}`), `{{.Hostname}}`
//! and the time field are refused with an error that says so; dockerd
//! shows it to the user when the container starts. Go's template engine is
//! too big a language to embed for this; the subset is parsed here, by
//! hand, and its grammar is the table below.
//!
//! | action | value (as Docker's `logger.Info`) |
//! |--------|-------|
//! | `{{.ID}}` | the first 12 hex digits of the container id |
//! | `{{.FullID}}`, `{{.ContainerID}}` | the full container id |
//! | `{{.Name}}` | the container name without its leading `/` |
//! | `{{.ContainerName}}` | the container name as dockerd sends it (`/web`) |
//! | `{{.ImageID}}` | the first 12 hex digits of the image id (after `sha256:`) |
//! | `{{.ImageFullID}}`, `{{.ContainerImageID}}` | the full image id (`sha256:...`) |
//! | `{{.ImageName}}`, `{{.ContainerImageName}}` | the image name as given to `docker run` |
//! | `{{.DaemonName}}` | `docker` |
//! | `{{.Command}}` | the entrypoint and arguments, joined by spaces |
//! | `{{.ContainerEntrypoint}}`, `{{.LogPath}}` | those fields |
//!
//! ringtail's default tag is `{{.Name}}` (Docker's own drivers default to
//! `{{.ID}}`): a source named after the container reads better in
//! `ringtail read` and in the dashboard, and the id is a label anyway.

use super::info::Info;

/// The tag used when the `tag` log-opt is absent or empty.
pub const DEFAULT_TAG: &str = "{{.Name}}";

/// A field of the container's info that a tag can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagField {
    Id,
    FullId,
    Name,
    ContainerName,
    ImageId,
    ImageFullId,
    ImageName,
    DaemonName,
    Command,
    ContainerEntrypoint,
    LogPath,
}

impl TagField {
    /// Every field, by the names a template uses.
    const NAMES: [(&'static str, TagField); 14] = [
        ("ID", TagField::Id),
        ("FullID", TagField::FullId),
        ("ContainerID", TagField::FullId),
        ("Name", TagField::Name),
        ("ContainerName", TagField::ContainerName),
        ("ImageID", TagField::ImageId),
        ("ImageFullID", TagField::ImageFullId),
        ("ContainerImageID", TagField::ImageFullId),
        ("ImageName", TagField::ImageName),
        ("ContainerImageName", TagField::ImageName),
        ("DaemonName", TagField::DaemonName),
        ("Command", TagField::Command),
        ("ContainerEntrypoint", TagField::ContainerEntrypoint),
        ("LogPath", TagField::LogPath),
    ];

    fn by_name(name: &str) -> Option<TagField> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, f)| f)
    }

    fn render(self, info: &Info, out: &mut String) {
        match self {
            TagField::Id => out.push_str(truncate_id(&info.container_id)),
            TagField::FullId => out.push_str(&info.container_id),
            TagField::Name => out.push_str(info.name()),
            TagField::ContainerName => out.push_str(&info.container_name),
            TagField::ImageId => out.push_str(truncate_id(&info.container_image_id)),
            TagField::ImageFullId => out.push_str(&info.container_image_id),
            TagField::ImageName => out.push_str(&info.container_image_name),
            TagField::DaemonName => out.push_str(&info.daemon_name),
            TagField::Command => {
                out.push_str(&info.container_entrypoint);
                for arg in &info.container_args {
                    out.push(' ');
                    out.push_str(arg);
                }
            }
            TagField::ContainerEntrypoint => out.push_str(&info.container_entrypoint),
            TagField::LogPath => out.push_str(&info.log_path),
        }
    }
}

/// Docker's short id: the algorithm prefix (`sha256:`) dropped, then the
/// first 12 characters.
pub fn truncate_id(id: &str) -> &str {
    let id = id.split_once(':').map_or(id, |(_, rest)| rest);
    match id.char_indices().nth(12) {
        Some((cut, _)) => &id[..cut],
        None => id,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(TagField),
}

/// A parsed `tag` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagTemplate {
    parts: Vec<Part>,
}

/// Why a `tag` template was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("log-opt tag: the action at byte {at} has no closing \"}}}}\"")]
    Unclosed { at: usize },
    #[error(
        "log-opt tag: {{{{{action}}}}} is not supported by ringtail; use one of {}",
        field_list()
    )]
    Unsupported { action: String },
}

fn field_list() -> String {
    let names: Vec<String> = TagField::NAMES
        .iter()
        .map(|(n, _)| format!("{{{{.{n}}}}}"))
        .collect();
    names.join(", ")
}

impl TagTemplate {
    /// Parses a template; an empty one means [`DEFAULT_TAG`].
    pub fn parse(template: &str) -> Result<TagTemplate, TagError> {
        let template = if template.is_empty() {
            DEFAULT_TAG
        } else {
            template
        };
        let mut parts = Vec::new();
        let mut rest = template;
        let mut offset = 0;
        // Go trims the white space after an action ending in " -}}" from
        // the text that follows it.
        let mut trim_next = false;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                push_text(&mut parts, rest, trim_next, false);
                break;
            };
            let after_open = &rest[open + 2..];
            let trim_left = after_open.starts_with("- ")
                || after_open.starts_with("-\t")
                || after_open.starts_with("-\n")
                || after_open.starts_with("-\r");
            push_text(&mut parts, &rest[..open], trim_next, trim_left);
            let Some(close) = after_open.find("}}") else {
                return Err(TagError::Unclosed { at: offset + open });
            };
            let inner = &after_open[..close];
            let trim_right = inner.len() > 1
                && inner.ends_with('-')
                && inner[..inner.len() - 1].ends_with([' ', '\t', '\n', '\r']);
            let mut action = inner;
            if trim_left {
                action = &action[1..];
            }
            if trim_right {
                action = &action[..action.len() - 1];
            }
            let action = action.trim_matches([' ', '\t', '\n', '\r']);
            let field = action
                .strip_prefix('.')
                .and_then(TagField::by_name)
                .ok_or_else(|| TagError::Unsupported {
                    action: inner.to_string(),
                })?;
            parts.push(Part::Field(field));
            trim_next = trim_right;
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        Ok(TagTemplate { parts })
    }

    /// The tag of one container.
    pub fn render(&self, info: &Info) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => f.render(info, &mut out),
            }
        }
        out
    }
}

impl Default for TagTemplate {
    fn default() -> Self {
        TagTemplate::parse(DEFAULT_TAG).expect("the default tag parses")
    }
}

fn push_text(parts: &mut Vec<Part>, text: &str, trim_start: bool, trim_end: bool) {
    const WS: [char; 4] = [' ', '\t', '\n', '\r'];
    let mut text = text;
    if trim_start {
        text = text.trim_start_matches(WS);
    }
    if trim_end {
        text = text.trim_end_matches(WS);
    }
    if !text.is_empty() {
        parts.push(Part::Text(text.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Info {
        Info {
            container_id: "3e6c1cd85a7d8a1fd7b0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6".into(),
            container_name: "/web".into(),
            container_image_id:
                "sha256:9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d".into(),
            container_image_name: "bb:latest".into(),
            container_entrypoint: "sh".into(),
            container_args: vec!["-c".into(), "echo hi".into()],
            daemon_name: "docker".into(),
            log_path: "".into(),
            ..Info::default()
        }
    }

    fn render(t: &str) -> Result<String, TagError> {
        TagTemplate::parse(t).map(|t| t.render(&info()))
    }

    #[test]
    fn docker_fields() {
        assert_eq!(render("{{.ID}}").unwrap(), "3e6c1cd85a7d");
        assert_eq!(render("{{.FullID}}").unwrap(), info().container_id);
        assert_eq!(render("{{.ContainerID}}").unwrap(), info().container_id);
        assert_eq!(render("{{.Name}}").unwrap(), "web");
        assert_eq!(render("{{.ContainerName}}").unwrap(), "/web");
        assert_eq!(render("{{.ImageID}}").unwrap(), "9c7a54a9a43c");
        assert_eq!(
            render("{{.ImageFullID}}").unwrap(),
            info().container_image_id
        );
        assert_eq!(render("{{.ImageName}}").unwrap(), "bb:latest");
        assert_eq!(render("{{.DaemonName}}").unwrap(), "docker");
        assert_eq!(render("{{.Command}}").unwrap(), "sh -c echo hi");
        assert_eq!(render("").unwrap(), "web", "the default is {{{{.Name}}}}");
    }

    #[test]
    fn text_spacing_and_trim_markers() {
        assert_eq!(
            render("app/{{.Name}}/{{ .ID }}.log").unwrap(),
            "app/web/3e6c1cd85a7d.log"
        );
        assert_eq!(render("a  {{- .Name -}}  b").unwrap(), "awebb");
        assert_eq!(
            render("a {{-.Name}}").unwrap_err(),
            TagError::Unsupported {
                action: "-.Name".into()
            }
        );
        assert_eq!(render("literal").unwrap(), "literal");
        assert_eq!(render("}} {{.Name}}").unwrap(), "}} web");
    }

    #[test]
    fn refused_templates_say_why() {
        let e = render("x{{.Name").unwrap_err();
        assert_eq!(e, TagError::Unclosed { at: 1 });
        assert!(e.to_string().contains("no closing"));
        let e = render("{{.Hostname}}").unwrap_err();
        assert!(
            e.to_string().contains("{{.Hostname}} is not supported"),
            "{e}"
        );
        assert!(e.to_string().contains("{{.FullID}}"), "{e}");
        assert!(render("{{.Name | upper}}").is_err());
        assert!(render("{{json .}}").is_err());
        assert!(render("{{}}").is_err());
        assert!(
            render("{{.name}}").is_err(),
            "Go field names are case-sensitive"
        );
    }

    #[test]
    fn short_ids() {
        assert_eq!(truncate_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(truncate_id("abc"), "abc");
        assert_eq!(truncate_id(""), "");
        assert_eq!(truncate_id("ééééééééééééééé"), "éééééééééééé");
    }
}
