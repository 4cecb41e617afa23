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
type vectorReader struct {
	rc syscall.RawConn
	// One call's state, in the struct so that the function handed to
	// rc.Read (made once, in newVectorReader) captures nothing per call:
	// a closure over locals would be allocated on every read.
	iov   [2]syscall.Iovec
	n     uintptr
	errno syscall.Errno
	call  func(fd uintptr) bool
}

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
	v := &vectorReader{rc: rc}
	v.call = v.readvFD
	return v
}

// readv reads into a, then b, and returns the bytes read in all: at least
// one, or an error (io.EOF when the peer closed its side).
func (v *vectorReader) readv(a, b []byte) (int, error) {
	v.iov[0] = syscall.Iovec{Base: &a[0]}
	v.iov[0].SetLen(len(a))
	v.iov[1] = syscall.Iovec{Base: &b[0]}
	v.iov[1].SetLen(len(b))
	err := v.rc.Read(v.call)
	n, errno := v.n, v.errno
	v.iov = [2]syscall.Iovec{} // no pointers into buffers that go back to their pools
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

// readvFD is one attempt of readv on the connection's descriptor; false
// asks rc.Read to wait until it is readable and call again.
func (v *vectorReader) readvFD(fd uintptr) bool {
	for {
		v.n, _, v.errno = syscall.Syscall(syscall.SYS_READV, fd, uintptr(unsafe.Pointer(&v.iov[0])), uintptr(len(v.iov)))
		switch v.errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}
