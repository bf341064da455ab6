/*
 * A real redis-server for the unit tests that need one: started on a free
 * loopback port (or a unix socket), killed with the test if it dies.
 * Without /usr/bin/redis-server every such test fails.
 */
#ifndef SU_CHECK_REDIS_H
#define SU_CHECK_REDIS_H

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <hiredis/hiredis.h>

#ifndef REDIS_BIN
#define REDIS_BIN "/usr/bin/redis-server"
#endif

static inline int su_check_free_port(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    ck_assert_int_ge(fd, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* PING until the server answers (even NOAUTH is an answer), at most ~5 s. */
static inline int su_check_redis_ready(pid_t pid, int port)
{
    int i;

    for (i = 0; i < 100; i++) {
        struct timeval tv = { 0, 200000 };
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        int status;
        if (c && c->err == 0) {
            redisReply *rep;
            redisSetTimeout(c, tv);
            rep = redisCommand(c, "PING");
            if (rep) {
                freeReplyObject(rep);
                redisFree(c);
                return 1;
            }
        }
        if (c)
            redisFree(c);
        if (waitpid(pid, &status, WNOHANG) == pid)
            return 0;
        usleep(50000);
    }
    return 0;
}

static inline pid_t su_check_redis_start(int port, const char *pass, const char *sock)
{
    char portbuf[16];
    const char *argv[24];
    int n = 0;
    pid_t pid;

    ck_assert_msg(access(REDIS_BIN, X_OK) == 0, REDIS_BIN " is not installed");
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    argv[n++] = "redis-server";
    argv[n++] = "--port"; argv[n++] = portbuf;
    argv[n++] = "--bind"; argv[n++] = "127.0.0.1";
    argv[n++] = "--save"; argv[n++] = "";
    argv[n++] = "--appendonly"; argv[n++] = "no";
    argv[n++] = "--daemonize"; argv[n++] = "no";
    argv[n++] = "--dir"; argv[n++] = "/tmp";
    if (pass) {
        argv[n++] = "--requirepass"; argv[n++] = pass;
    }
    if (sock) {
        argv[n++] = "--unixsocket"; argv[n++] = sock;
        argv[n++] = "--unixsocketperm"; argv[n++] = "700";
    }
    argv[n] = NULL;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        /* a test that dies must not leave the server behind */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(REDIS_BIN, (char *const *)argv);
        _exit(127);
    }
    ck_assert_msg(su_check_redis_ready(pid, port), "redis-server did not come up on %d", port);
    return pid;
}

/*
 * redis-server with argv (argv[0] "redis-server"; a sentinel with
 * "--sentinel" among them), answering PING on port, or the test fails.
 */
static inline pid_t su_check_spawn(const char *const *argv, int port)
{
    pid_t pid;

    ck_assert_msg(access(REDIS_BIN, X_OK) == 0, REDIS_BIN " is not installed");
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(REDIS_BIN, (char *const *)argv);
        _exit(127);
    }
    ck_assert_msg(su_check_redis_ready(pid, port), "%s did not come up on %d",
                  argv[1], port);
    return pid;
}

#endif
