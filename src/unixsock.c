/* unixsock.c: Unix-domain socket files (see unixsock.h). */
#include "unixsock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

bool unixsock_address(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof(sa->sun_path))
        return false;
    memcpy(sa->sun_path, path, n + 1);
    return true;
}

const char *unixsock_refusal(const char *path, struct stat *st, char *why, size_t whysz)
{
    why[0] = '\0';
    if (lstat(path, st) != 0)
        return why;
    if (!S_ISSOCK(st->st_mode))
        snprintf(why, whysz, "%s exists and is not a socket", path);
    else if (st->st_uid != geteuid())
        snprintf(why, whysz, "%s belongs to uid %u, not to this user (uid %u)", path,
                 (unsigned)st->st_uid, (unsigned)geteuid());
    return why;
}

bool unixsock_in_use(const char *path)
{
    struct sockaddr_un sa;
    if (!unixsock_address(path, &sa))
        return false;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    /* (a listener whose backlog is full refuses with EAGAIN: it is there all the same) */
    bool used = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
    close(fd);
    return used;
}

/* The name a socket for path is bound under before its file is renamed to path. */
static bool staging_name(const char *path, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s.%ld", path, (long)getpid());
    return n > 0 && (size_t)n < outsz;
}

bool unixsock_made_for(int fd, const char *path)
{
    struct sockaddr_un sa;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || sa.sun_family != AF_UNIX)
        return false;
    const char *name = sa.sun_path;
    size_t n = strlen(path);
    if (strncmp(name, path, sizeof(sa.sun_path)) == 0)
        return true;
    if (strncmp(name, path, n) != 0 || name[n] != '.' || !name[n + 1])
        return false;
    return strspn(name + n + 1, "0123456789") == strnlen(name + n + 1, sizeof(sa.sun_path) - n - 1);
}

int unixsock_listen(const char *path, mode_t mode, int backlog, struct stat *st)
{
    struct sockaddr_un sa, tmp;
    if (!unixsock_address(path, &sa)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char tmp_path[sizeof(sa.sun_path) + 24];
    bool staged =
        staging_name(path, tmp_path, sizeof(tmp_path)) && unixsock_address(tmp_path, &tmp);
    const char *at = staged ? tmp_path : path; /* no room for the longer name: bound at path */
    unlink(at);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old_mask = umask(0177); /* nobody else may connect before the mode is set */
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)(staged ? &tmp : &sa), sizeof(sa)) == 0;
    umask(old_mask);
    bool bound = ok;
    ok = ok && chmod(at, mode) == 0 && listen(fd, backlog) == 0;
    if (ok && staged && rename(tmp_path, path) == 0)
        at = path;
    ok = ok && at == path && stat(path, st) == 0;
    if (ok)
        return fd;
    int e = errno;
    if (bound)
        unlink(at);
    if (fd >= 0)
        close(fd);
    errno = e;
    return -1;
}

void unixsock_remove_own(const char *path, const struct stat *st)
{
    struct stat now;
    if (lstat(path, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino)
        unlink(path);
}
