// xgen: an independent check on `pollchat-bench`'s latency figures. It shares no code with
// pollchat: C, level-triggered epoll, one blocking read per readable event, `sscanf` on
// every line. If the two generators agree on a server's latency, the figure is the
// server's, not a generator's.
//
// Load: CLIENTS chatters each send RATE lines per second (64-byte lines, starts staggered
// over one interval) for SECS seconds, and every chatter hears every line. pollchat: each
// chatter is one connection (it does not hear its own lines). Redis: each chatter PUBLISHes
// on one connection and listens on a second, SUBSCRIBEd one (it hears its own lines too).
// Latency is from the send of a line to its arrival, in microseconds, in 1-us buckets.
//
// Build: cc -O2 -o xgen benches/xcheck/xgen.c      Run: xgen pollchat|redis PORT CLIENTS RATE SECS
// Prints one JSON line. Loopback only (127.0.0.1); it stops by itself.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 4096
#define BUCKETS 2000000 /* 1-us buckets up to 2 s */

struct conn {
    int fd;
    int len;
    char buf[65536];
};

static int redis;
static int counting;
static long long joined, delivered;
static unsigned *histogram;
static struct conn listen_on[MAX_CLIENTS], send_on[MAX_CLIENTS];

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
        perror("connect");
        exit(1);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void write_all(int fd, const char *s, int n) {
    while (n > 0) {
        int w = write(fd, s, n);
        if (w < 0 && errno != EINTR) {
            perror("write");
            exit(1);
        }
        if (w > 0) s += w, n -= w;
    }
}

// One line the server sent: a benchmark line ("X id seq sent_ns ..."), a welcome or a
// subscription (counted as joined), or anything else (ignored).
static void heard(const char *p, int n) {
    const char *x = memmem(p, n, "X ", 2);
    long long id, seq, sent;
    if (!x) {
        if (memmem(p, n, "welcome", 7) || memmem(p, n, "subscribe", 9)) joined++;
        return;
    }
    if (!counting || sscanf(x, "X %lld %lld %lld", &id, &seq, &sent) != 3) return;
    long long us = (now_ns() - sent) / 1000;
    histogram[us < 0 ? 0 : us >= BUCKETS ? BUCKETS - 1 : us]++;
    delivered++;
}

// One read, and every whole line in the buffer (RESP lines end in "\r\n").
static void readable(struct conn *c) {
    int r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    if (r <= 0) {
        fprintf(stderr, "the server closed a connection\n");
        exit(1);
    }
    c->len += r;
    int start = 0;
    for (int i = 0; i < c->len; i++) {
        if (c->buf[i] == '\n') {
            heard(c->buf + start, i - start);
            start = i + 1;
        }
    }
    memmove(c->buf, c->buf + start, c->len - start);
    c->len -= start;
}

static void serve(int ep, int timeout_ms) {
    struct epoll_event ev[1024];
    int k = epoll_wait(ep, ev, 1024, timeout_ms);
    for (int j = 0; j < k; j++) {
        unsigned u = ev[j].data.u32;
        readable(u < MAX_CLIENTS ? &listen_on[u] : &send_on[u - MAX_CLIENTS]);
    }
}

static void watch(int ep, int fd, unsigned id) {
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = id};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

static void say(int i, long long seq) {
    char text[128], msg[256];
    int m = snprintf(text, sizeof text, "X %d %lld %lld ", i, seq, now_ns());
    while (m < 64) text[m++] = 'x';
    text[m] = 0;
    int len = redis ? snprintf(msg, sizeof msg,
                               "*3\r\n$7\r\nPUBLISH\r\n$14\r\npollchat-bench\r\n$%d\r\n%s\r\n", m, text)
                    : snprintf(msg, sizeof msg, "%s\n", text);
    write_all(send_on[i].fd, msg, len);
}

static long long quantile(double q) {
    long long seen = 0;
    for (long long us = 0; us < BUCKETS; us++)
        if ((seen += histogram[us]) >= q * delivered) return us;
    return BUCKETS;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: xgen pollchat|redis PORT CLIENTS RATE SECS\n");
        return 2;
    }
    redis = !strcmp(argv[1], "redis");
    int port = atoi(argv[2]), n = atoi(argv[3]);
    double rate = atof(argv[4]), secs = atof(argv[5]);
    if (n < 2 || n > MAX_CLIENTS || rate <= 0 || secs <= 0) return 2;
    histogram = calloc(BUCKETS, sizeof *histogram);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        listen_on[i].fd = dial(port);
        watch(ep, listen_on[i].fd, i);
        if (redis) {
            const char *sub = "*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\npollchat-bench\r\n";
            write_all(listen_on[i].fd, sub, strlen(sub));
            send_on[i].fd = dial(port);
            watch(ep, send_on[i].fd, MAX_CLIENTS + i);
        } else {
            send_on[i].fd = listen_on[i].fd;
        }
    }
    long long t0 = now_ns();
    while (joined < n && now_ns() - t0 < 10000000000LL) serve(ep, 10);
    if (joined < n) {
        fprintf(stderr, "only %lld of %d joined\n", joined, n);
        return 1;
    }
    long long interval = (long long)(1e9 / rate), start = now_ns();
    long long end = start + (long long)(secs * 1e9), stop = end + 1000000000LL, sent = 0;
    static long long next[MAX_CLIENTS], seq[MAX_CLIENTS];
    for (int i = 0; i < n; i++) next[i] = start + interval * i / n;
    counting = 1;
    for (long long t = now_ns(); t < stop; t = now_ns()) {
        long long wake = stop;
        for (int i = 0; i < n && t < end; i++) {
            if (next[i] <= t) {
                say(i, seq[i]++);
                sent++;
                next[i] += interval;
            }
            if (next[i] < wake) wake = next[i];
        }
        /* Sleep until the next line is due, rounded up to epoll's millisecond (as mio does
           for pollchat-bench): no spinning, and a line is stamped when it is sent. */
        long long ms = (wake - now_ns() + 999999) / 1000000;
        serve(ep, ms < 0 ? 0 : ms > 5 ? 5 : (int)ms);
    }
    long long expected = redis ? sent * n : sent * (n - 1);
    printf("{\"proto\":\"%s\",\"sent\":%lld,\"delivered\":%lld,\"expected\":%lld,"
           "\"p50_us\":%lld,\"p99_us\":%lld,\"p999_us\":%lld}\n",
           argv[1], sent, delivered, expected, quantile(0.5), quantile(0.99), quantile(0.999));
    return 0;
}
