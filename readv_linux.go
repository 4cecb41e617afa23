package yamux

import (
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// vectorReader reads a TCP connection with readv(2): one system call fills
// a frame's payload and, behind it, a small buffer that catches the next
// frame's header. net.Conn has no vectored read, so it goes through the
// connection's RawConn, which waits for readability and honours read
// deadlines as Read does.
type vectorReader struct{ rc syscall.RawConn }

// newVectorReader returns a vectorReader for a TCP connection, or nil.
func newVectorReader(rd io.Reader) *vectorReader {
	tc, ok := rd.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return &vectorReader{rc: rc}
}

// readv reads into a, then b, and returns the bytes read in all: at least
// one, or an error (io.EOF when the peer closed its side).
func (v *vectorReader) readv(a, b []byte) (int, error) {
	iov := [2]syscall.Iovec{{Base: &a[0]}, {Base: &b[0]}}
	iov[0].SetLen(len(a))
	iov[1].SetLen(len(b))
	var n uintptr
	var errno syscall.Errno
	err := v.rc.Read(func(fd uintptr) bool {
		for {
			n, _, errno = syscall.Syscall(syscall.SYS_READV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			switch errno {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until readable, then call again
			}
			return true
		}
	})
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("readv", errno)
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}
