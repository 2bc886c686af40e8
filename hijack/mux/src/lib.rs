//! Waiting on host and LKL file descriptors together: poll, select and epoll over mixed sets.
