/* syslog_sink: the fastest receivers a syslog sender can have, as floors.
 *
 *   syslog_sink unix PATH N   a /dev/log-style unix datagram socket
 *   syslog_sink tcp PORT      a TCP listener on 127.0.0.1
 *
 * unix: binds a datagram socket at PATH (8 MiB receive buffer,
 * SO_PASSCRED as ringtail's listener asks), receives N datagrams with
 * recvmmsg(2) in batches of 64, reading each one's credentials and
 * touching every byte. tcp: accepts one connection and reads it in 1 MiB
 * reads until the sender closes. Both store nothing and print the seconds
 * from the first byte to the last. scripts/bench-syslog runs them beside
 * rsyslog and ringtail with the same sender (sysload), so that "how fast
 * could any receiver be on this machine" is measured in the same window
 * as the daemons.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAXLEN 2048

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int tcp_sink(int port) {
    int l = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0) { perror("bind"); return 1; }
    int c = accept(l, NULL, NULL);
    if (c < 0) { perror("accept"); return 1; }
    static char buf[1 << 20];
    long total = 0, sum = 0;
    double t0 = 0;
    for (;;) {
        ssize_t k = read(c, buf, sizeof buf);
        if (k <= 0) break;
        if (total == 0) t0 = now();
        for (ssize_t j = 0; j < k; j += 64) sum += buf[j];
        total += k;
    }
    printf("%.3f\n", now() - t0);
    fprintf(stderr, "received %ld bytes (checksum %ld)\n", total, sum);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "tcp") == 0) return tcp_sink(atoi(argv[2]));
    if (argc < 4 || strcmp(argv[1], "unix") != 0) {
        fprintf(stderr, "usage: syslog_sink unix PATH N | syslog_sink tcp PORT\n");
        return 2;
    }
    argv++;
    long n = atol(argv[2]);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    int size = 8 << 20, on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);

    static char bufs[BATCH][MAXLEN];
    static char ctl[BATCH][CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    long got = 0, sum = 0, pids = 0;
    double t0 = 0;
    while (got < n) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){ bufs[i], MAXLEN };
            msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i], .msg_iovlen = 1,
                .msg_control = ctl[i], .msg_controllen = sizeof ctl[i] };
        }
        int k = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (k < 0) { perror("recvmmsg"); return 1; }
        if (got == 0) t0 = now();
        for (int i = 0; i < k; i++) {
            for (unsigned j = 0; j < msgs[i].msg_len; j++) sum += bufs[i][j];
            struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr);
            if (c && c->cmsg_type == SCM_CREDENTIALS) pids += ((struct ucred *)CMSG_DATA(c))->pid != 0;
        }
        got += k;
    }
    printf("%.3f\n", now() - t0);
    fprintf(stderr, "received %ld (%ld with credentials, checksum %ld)\n", got, pids, sum);
    return 0;
}
