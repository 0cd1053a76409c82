package agent

import (
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
)

// status is where a container or a process is in its lifecycle.
type status int

const (
	statusCreated status = iota // init forked, user code not started
	statusRunning
	statusPaused // containers only: the cgroup is frozen
	statusStopped
)

func (s status) String() string {
	switch s {
	case statusCreated:
		return "created"
	case statusRunning:
		return "running"
	case statusPaused:
		return "paused"
	case statusStopped:
		return "stopped"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// event moves a lifecycle from one status to the next.
type event int

const (
	eventStart event = iota
	eventPause
	eventResume
	eventExit
)

func (e event) String() string {
	switch e {
	case eventStart:
		return "start"
	case eventPause:
		return "pause"
	case eventResume:
		return "resume"
	case eventExit:
		return "exit"
	}
	return fmt.Sprintf("event(%d)", int(e))
}

// lifecycle is a transition table; a missing entry is an invalid transition.
type lifecycle map[status]map[event]status

var (
	// containerLifecycle follows the container's init process, plus the
	// freezer.
	containerLifecycle = lifecycle{
		statusCreated: {eventStart: statusRunning, eventExit: statusStopped},
		statusRunning: {eventPause: statusPaused, eventExit: statusStopped},
		statusPaused:  {eventResume: statusRunning, eventExit: statusStopped},
		statusStopped: {},
	}
	// processLifecycle is a process's own view: pausing is the container's
	// business.
	processLifecycle = lifecycle{
		statusCreated: {eventStart: statusRunning, eventExit: statusStopped},
		statusRunning: {eventExit: statusStopped},
		statusStopped: {},
	}
)

// next returns the status that e leads to from s, or an
// errdefs.ErrFailedPrecondition error naming what of.
func (l lifecycle) next(what string, s status, e event) (status, error) {
	to, ok := l[s][e]
	if !ok {
		return s, fmt.Errorf("cannot %s %s: it is %s: %w", e, what, s, errdefs.ErrFailedPrecondition)
	}
	return to, nil
}

// op is an operation that does not change the lifecycle but is allowed only
// in some statuses.
type op string

const (
	opExec       op = "exec in"
	opDelete     op = "delete"
	opSignal     op = "signal"
	opUpdate     op = "update"
	opWriteStdin op = "write to"
	opResize     op = "resize the terminal of"
)

// containerOps says in which statuses of a container each op is allowed.
var containerOps = map[op][]status{
	opExec:   {statusCreated, statusRunning},
	opDelete: {statusCreated, statusStopped},
	opSignal: {statusCreated, statusRunning, statusPaused},
	opUpdate: {statusCreated, statusRunning, statusPaused},
}

// processOps says in which statuses of a process each op is allowed.
var processOps = map[op][]status{
	opDelete:     {statusStopped},
	opSignal:     {statusCreated, statusRunning},
	opWriteStdin: {statusCreated, statusRunning},
	opResize:     {statusCreated, statusRunning},
}

// allowed returns nil if o may run in status s, per table, and an
// errdefs.ErrFailedPrecondition error otherwise. A process that has
// stopped is gone as far as signals go: that is errdefs.ErrNotFound, as
// containerd's shims report.
func allowed(table map[op][]status, what string, s status, o op) error {
	if slices.Contains(table[o], s) {
		return nil
	}
	if o == opSignal && s == statusStopped {
		return fmt.Errorf("cannot %s %s: it has exited: %w", o, what, errdefs.ErrNotFound)
	}
	return fmt.Errorf("cannot %s %s: it is %s: %w", o, what, s, errdefs.ErrFailedPrecondition)
}
