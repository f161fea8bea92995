/* unixsock.h: Unix-domain socket files: their addresses, binding one in place of a stale file
 * without a moment when the path is missing, and removing only the file this process made.
 * Used by the clients' socket (listener.c) and the takeover control socket (takeover.c). */
#ifndef LAKEPROXY_UNIXSOCK_H
#define LAKEPROXY_UNIXSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

/* Fills a sockaddr_un for path; false when it does not fit (sun_path: 108 bytes with its NUL). */
bool unixsock_address(const char *path, struct sockaddr_un *sa);

/* Why path cannot be replaced by a socket of this user: it exists and is not a socket, or is
 * another user's. "" (why itself) when it can, or does not exist; *st is its lstat then. */
const char *unixsock_refusal(const char *path, struct stat *st, char *why, size_t whysz);

/* Does a process accept connections on the socket file at path? */
bool unixsock_in_use(const char *path);

/* A listening socket (non-blocking, close-on-exec) at path with permissions mode, replacing
 * whatever socket file was there: bound under a name of its own beside path, given its mode,
 * then renamed over path, so that whoever finds the file can connect. *st: the new file's
 * stat. -1 with errno on failure, when nothing is left behind. The caller checks
 * unixsock_refusal first. */
int unixsock_listen(const char *path, mode_t mode, int backlog, struct stat *st);

/* Is fd a Unix socket made for path? Its own name is path, or the name unixsock_listen bound
 * it under before renaming its file to path. */
bool unixsock_made_for(int fd, const char *path);

/* Removes the file at path if it is still the one st describes (dev and inode): another
 * process may have put its own socket there since. */
void unixsock_remove_own(const char *path, const struct stat *st);

#endif
