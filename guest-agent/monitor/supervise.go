package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	devices "github.com/opencontainers/cgroups/devices/config"

	"github.com/containerd/log"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
	"github.com/sccontainers/scc/attest/source"
	"github.com/sccontainers/scc/attest/vtpm"
	"github.com/sccontainers/scc/guest-agent/initsys"
	"github.com/sccontainers/scc/guest-agent/vport"
	"github.com/sccontainers/scc/internal/forward"
)

// agentExitGrace is how long an agent that asked for a clean has to end
// on its own (it answers the host first) before the monitor kills it.
const agentExitGrace = 10 * time.Second

// errNoInitOnFree refuses a clean of a guest whose kernel does not zero
// the pages it frees: the clean could not promise that the last tenant's
// memory is gone.
var errNoInitOnFree = errors.New("the guest kernel does not zero freed memory (boot it with init_on_free=1)")

// errCleanPending refuses a second clean request of one agent.
var errCleanPending = errors.New("a clean is already pending")

// supervisor runs the agent, one generation per tenant: when an agent
// that asked for a clean exits, it cleans the guest and starts the next
// agent; when an agent exits otherwise, the guest stops.
type supervisor struct {
	meter   *meter
	source  source.Kind
	cmdline string
	// tpm is the guest's TPM (nil: none) and deny the device rules that
	// keep the agent from it; the clean replaces both with the next
	// tenant's. Only run's goroutine uses them.
	tpm  *guestTPM
	deny []*devices.Rule
	// base is the guest as the first agent found it, which every clean
	// returns it to (a baseline, as JSON); taken before the first agent
	// starts.
	base []byte

	mu      sync.Mutex
	agent   *os.Process   // the running agent, guarded by mu
	request *cleanRequest // the clean the running agent asked for, guarded by mu
}

// cleanRequest is a clean the agent asked for.
type cleanRequest struct {
	nonce [32]byte
	// ports identifies the virtio-serial ports the host must replace
	// (name to sysfs inode) as they were when the clean was asked for.
	ports map[string]uint64
	kill  *time.Timer
}

// run starts the agent and restarts it after each clean. It returns when
// an agent exits without having asked for a clean, or a clean fails: the
// guest then stops.
func (s *supervisor) run(ctx context.Context) error {
	base, err := takeBaseline(ctx)
	if err != nil {
		return err
	}
	if s.base, err = json.Marshal(base); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	for {
		err := s.runAgent(ctx)
		req := s.takeRequest()
		if req == nil {
			return err
		}
		log.G(ctx).WithError(err).Info("agent ended for a clean")
		if err := s.clean(ctx, req); err != nil {
			return fmt.Errorf("clean guest: %w", err)
		}
	}
}

// runAgent starts one agent, serves it the monitor's API and returns
// when it has exited; its PID namespace, and every process in it, is gone
// by then.
func (s *supervisor) runAgent(ctx context.Context) error {
	var want *[32]byte
	if s.meter.currentGeneration() > 0 {
		// The executable the next tenant's agent runs from must be the
		// one measured at boot.
		d, err := s.meter.bootDigest(vtpm.EventAgent)
		if err != nil {
			return err
		}
		want = &d
	}
	proc, conn, err := startAgent(ctx, s.deny, want)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.agent = proc
	s.mu.Unlock()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go giveLinks(actx, proc.Pid)
	c, err := net.FileConn(conn)
	conn.Close()
	if err != nil {
		proc.Kill()
		waitAgent(proc.Pid)
		return fmt.Errorf("agent connection: %w", err)
	}
	go func() {
		if err := serve(actx, &service{meter: s.meter, source: s.source, sup: s}, c); err != nil {
			log.G(ctx).WithError(err).Error("serve agent")
		}
	}()
	err = waitAgent(proc.Pid)
	s.mu.Lock()
	s.agent = nil
	s.mu.Unlock()
	return err
}

// requestClean arms a clean for when the running agent exits. It fails,
// arming nothing, when the guest cannot be cleaned.
func (s *supervisor) requestClean(ctx context.Context, nonce [32]byte) error {
	if !initOnFree(s.cmdline) {
		return errNoInitOnFree
	}
	if _, ok := initsys.CmdlineValue(s.cmdline, agentapi.TPMParam); s.meter.hasTPM() && !ok {
		return errTPMNotReplaceable
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.request != nil {
		return errCleanPending
	}
	if s.agent == nil {
		return errors.New("no agent runs")
	}
	ports, err := portInodes(vport.SysClassDir, s.portNames())
	if err != nil {
		return err
	}
	agent := s.agent
	s.request = &cleanRequest{
		nonce: nonce,
		ports: ports,
		kill: time.AfterFunc(agentExitGrace, func() {
			log.G(ctx).Warn("agent did not end after asking for a clean: killing it")
			agent.Kill()
		}),
	}
	return nil
}

// takeRequest returns the armed clean, if any, and disarms it.
func (s *supervisor) takeRequest() *cleanRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.request
	s.request = nil
	if r != nil {
		r.kill.Stop()
	}
	return r
}

// portNames are the virtio-serial ports a clean has the host replace:
// freeing a port frees (and zeroes) the buffers that held what the host
// sent through it, and a new TPM port brings the next tenant's TPM.
func (s *supervisor) portNames() []string {
	names := []string{agentapi.PortName, forward.PortName}
	if port, ok := initsys.CmdlineValue(s.cmdline, agentapi.TPMParam); ok {
		names = append(names, port)
	}
	return names
}

// paramInitOnFree is the kernel parameter that makes the kernel zero
// every page it frees.
const paramInitOnFree = "init_on_free"

// initOnFree reports whether the kernel command line turns
// init_on_free on: its last occurrence counts, as for the kernel.
func initOnFree(cmdline string) bool {
	on := false
	for _, f := range strings.Fields(cmdline) {
		if k, v, _ := strings.Cut(f, "="); k == paramInitOnFree {
			switch strings.ToLower(v) {
			case "1", "y", "yes", "on", "true":
				on = true
			default:
				on = false
			}
		}
	}
	return on
}
