/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * Structures that system calls take but that the uapi headers leave to the
 * C library.  Their layout is the kernel's.
 */
#ifndef _ASM_UAPI_LKL_SYSCALL_TYPES_H
#define _ASM_UAPI_LKL_SYSCALL_TYPES_H

#include <linux/types.h>
#include <linux/uio.h>

struct sockaddr {
	unsigned short sa_family;
	char sa_data[14];
};

struct user_msghdr {
	void *msg_name;
	int msg_namelen;
	struct iovec *msg_iov;
	__kernel_size_t msg_iovlen;
	void *msg_control;
	__kernel_size_t msg_controllen;
	unsigned int msg_flags;
};

struct mmsghdr {
	struct user_msghdr msg_hdr;
	unsigned int msg_len;
};

struct linux_dirent64 {
	__u64 d_ino;
	__s64 d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Socket address families and types the uapi headers do not define. */
#define AF_UNSPEC	0
#define AF_UNIX		1
#define AF_INET		2
#define AF_INET6	10
#define AF_NETLINK	16
#define AF_PACKET	17

#define SOCK_STREAM	1
#define SOCK_DGRAM	2
#define SOCK_RAW	3
#define SOCK_SEQPACKET	5

#define SOL_SOCKET	1

#endif
