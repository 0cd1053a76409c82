package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/guest-agent/stream"
)

// process is a container's init or exec process with the guest ends of its
// stdio.
type process struct {
	what     string // "container <id>" or "exec <id> in container <id>", for errors
	lp       *libcontainer.Process
	terminal bool

	stdout, stderr *stream.Buffer

	// Ends handed to the child; closed once it started, so that EOF on
	// stdout/stderr means every writer in the container is gone.
	childFiles    []*os.File
	readers       []*os.File // our ends of the stdout/stderr pipes
	consoleSocket *os.File   // our end of libcontainer's console socket

	stdinMu sync.Mutex
	stdin   io.WriteCloser // nil when not forwarded or closed, guarded by stdinMu
	pty     *os.File       // terminal master, guarded by stdinMu

	mu     sync.Mutex
	status status // guarded by mu
	pid    int    // guarded by mu

	exited     chan struct{} // closed once exitStatus and exitedAt are set
	exitStatus uint32
	exitedAt   time.Time
}

// newProcess prepares lp's stdio as stdio asks: a terminal whose master
// comes back over a console socket, or one pipe per forwarded stream.
// Streams that are not forwarded are /dev/null in the container and at
// end of stream for the host. rootUID and rootGID own the pipes, so a
// process in a user namespace can reopen them through /proc/self/fd.
func newProcess(what string, lp *libcontainer.Process, stdio *agentapi.StdioConfig, rootUID, rootGID int) (_ *process, retErr error) {
	p := &process{
		what:     what,
		lp:       lp,
		terminal: stdio.GetTerminal(),
		status:   statusCreated,
		exited:   make(chan struct{}),
	}
	defer func() {
		if retErr != nil {
			p.closeChildFiles()
			p.release()
		}
	}()
	if p.terminal {
		parent, child, err := socketpair()
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		p.consoleSocket = parent
		p.childFiles = append(p.childFiles, child)
		lp.ConsoleSocket = child
		p.stdout = stream.New(0)
		p.stderr = stream.Closed() // a terminal merges stderr into stdout
		return p, nil
	}

	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		if rootUID != 0 || rootGID != 0 {
			for _, f := range []*os.File{r, w} {
				if err := f.Chown(rootUID, rootGID); err != nil {
					r.Close()
					w.Close()
					return nil, nil, err
				}
			}
		}
		return r, w, nil
	}
	if stdio.GetStdin() {
		r, w, err := pipe()
		if err != nil {
			return nil, fmt.Errorf("stdin pipe: %w", err)
		}
		lp.Stdin, p.stdin = r, w
		p.childFiles = append(p.childFiles, r)
	}
	p.stdout = stream.Closed()
	if stdio.GetStdout() {
		r, w, err := pipe()
		if err != nil {
			return nil, fmt.Errorf("stdout pipe: %w", err)
		}
		lp.Stdout = w
		p.childFiles = append(p.childFiles, w)
		p.readers = append(p.readers, r)
		p.stdout = stream.New(0)
		go p.stdout.Fill(r)
	}
	p.stderr = stream.Closed()
	if stdio.GetStderr() {
		r, w, err := pipe()
		if err != nil {
			return nil, fmt.Errorf("stderr pipe: %w", err)
		}
		lp.Stderr = w
		p.childFiles = append(p.childFiles, w)
		p.readers = append(p.readers, r)
		p.stderr = stream.New(0)
		go p.stderr.Fill(r)
	}
	return p, nil
}

// started records that libcontainer started p as pid: it drops the child's
// ends of the stdio and, for a terminal, takes the master that the
// container's init sent back before it reported ready.
func (p *process) started(pid int) error {
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
	p.closeChildFiles()
	if !p.terminal {
		return nil
	}
	defer func() {
		p.consoleSocket.Close()
		p.consoleSocket = nil
	}()
	master, err := recvFile(p.consoleSocket)
	if err != nil {
		return fmt.Errorf("receive terminal: %w", err)
	}
	p.stdinMu.Lock()
	p.pty = master
	p.stdin = master
	p.stdinMu.Unlock()
	go p.stdout.Fill(master)
	return nil
}

// start moves p to running. A process that already exited has run: its
// exit can race with the start that let it run.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == statusStopped {
		return nil
	}
	next, err := processLifecycle.next(p.what, p.status, eventStart)
	if err != nil {
		return err
	}
	p.status = next
	return nil
}

// state returns p's status and pid.
func (p *process) state() (status, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.pid
}

// wait waits for p to exit and records its exit status, then calls onExit.
// It runs on its own goroutine for every started process; release drops
// the reaper's claim on the pid once the status is collected.
func (p *process) wait(release func(), onExit func()) {
	ps, _ := p.lp.Wait()
	release()
	code := uint32(255) // the status of a process whose status is lost
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			code = uint32(exitCode(ws))
		}
	}
	p.exit(code, time.Now())
	onExit()
}

// exit records that p ended with code at t.
func (p *process) exit(code uint32, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next, err := processLifecycle.next(p.what, p.status, eventExit)
	if err != nil {
		return // already stopped
	}
	p.status = next
	p.exitStatus = code
	p.exitedAt = t
	close(p.exited)
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// signal sends sig to p.
func (p *process) signal(sig unix.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := allowed(processOps, p.what, p.status, opSignal); err != nil {
		return err
	}
	if err := p.lp.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal %s: it has exited: %w", p.what, errdefs.ErrNotFound)
		}
		return fmt.Errorf("signal %s: %w", p.what, err)
	}
	return nil
}

func (p *process) closeChildFiles() {
	for _, f := range p.childFiles {
		f.Close()
	}
	p.childFiles = nil
}

// release frees the guest's side of p's stdio. Output not yet read is
// dropped.
func (p *process) release() {
	p.stdinMu.Lock()
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
	}
	if p.pty != nil {
		p.pty.Close()
		p.pty = nil
	}
	p.stdinMu.Unlock()
	if p.consoleSocket != nil {
		p.consoleSocket.Close()
		p.consoleSocket = nil
	}
	// Closing the readers also ends copies that wait on a pipe some
	// leftover process in the container still holds open.
	for _, r := range p.readers {
		r.Close()
	}
	if p.stdout != nil {
		p.stdout.Discard()
	}
	if p.stderr != nil {
		p.stderr.Discard()
	}
}

// socketpair returns the two ends of a unix stream socket pair, the second
// to be inherited by a child.
func socketpair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// recvFile receives one file descriptor sent with SCM_RIGHTS over socket,
// as libcontainer's init sends the terminal master, and returns it in
// non-blocking mode so reads can be interrupted by Close.
func recvFile(socket *os.File) (*os.File, error) {
	rc, err := socket.SyscallConn()
	if err != nil {
		return nil, err
	}
	name := make([]byte, 4096) // the sender puts the file's name in the payload
	oob := make([]byte, unix.CmsgSpace(4))
	var (
		n, oobn int
		rerr    error
	)
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, os.NewSyscallError("recvmsg", rerr)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		rights, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, rights...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("got %d file descriptors, want 1", len(fds))
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, os.NewSyscallError("set non-blocking", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
