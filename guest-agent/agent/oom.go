package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/log"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

// maxOOMEvents bounds the OOM kills kept while the host does not collect
// them; the oldest go first.
const maxOOMEvents = 128

// oomEvents queues the ids of containers in which the OOM killer killed a
// process, until the host collects them with GetOOMEvent.
type oomEvents struct {
	mu     sync.Mutex
	ids    []string      // oldest first, guarded by mu
	notify chan struct{} // closed when ids gets an entry, guarded by mu
}

func newOOMEvents() *oomEvents {
	return &oomEvents{notify: make(chan struct{})}
}

func (q *oomEvents) push(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ids) == maxOOMEvents {
		q.ids = q.ids[1:]
	}
	q.ids = append(q.ids, id)
	close(q.notify)
	q.notify = make(chan struct{})
}

// pop returns the oldest queued id, waiting for one until ctx ends.
func (q *oomEvents) pop(ctx context.Context) (string, error) {
	for {
		q.mu.Lock()
		if len(q.ids) > 0 {
			id := q.ids[0]
			q.ids = q.ids[1:]
			q.mu.Unlock()
			return id, nil
		}
		notify := q.notify
		q.mu.Unlock()
		select {
		case <-notify:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// GetOOMEvent waits for the next OOM kill in a container.
func (s *Service) GetOOMEvent(ctx context.Context, _ *agentapi.GetOOMEventRequest) (*agentapi.OOMEvent, error) {
	id, err := s.oom.pop(ctx)
	if err != nil {
		return nil, err
	}
	return &agentapi.OOMEvent{ContainerId: id}, nil
}

// watchOOM queues c's id each time the OOM killer kills a process in its
// cgroup (group, a cgroup v2 path), as the kernel counts in memory.events.
// It returns once the cgroup is empty or removed: the watch cannot be
// cancelled otherwise, and must not be, or the watching goroutine of
// cgroup2 would block on its unread channel.
func (s *Service) watchOOM(ctx context.Context, id, group string) {
	m, err := cgroup2.Load(group)
	if err != nil {
		log.G(ctx).WithError(err).Debug("no cgroup v2 to watch for OOM kills")
		return
	}
	// Kills before the watch began (the init can be killed while it
	// starts) count too: the baseline is zero, not the first reading.
	var kills uint64
	events, errs := m.EventChan()
	for {
		select {
		case e := <-events:
			if e.OOMKill > kills {
				kills = e.OOMKill
				log.G(ctx).WithField("oom_kill", kills).Info("OOM kill in container")
				s.oom.push(id)
			}
		case err, ok := <-errs:
			if ok && err != nil {
				log.G(ctx).WithError(err).Warn("watch memory events")
			}
			// The watch ends when the cgroup empties, after the event
			// that emptied it was sent: collect it if it is there.
			select {
			case e := <-events:
				if e.OOMKill > kills {
					s.oom.push(id)
				}
			default:
			}
			return
		}
	}
}

// memoryEvents reads the memory.events counters of a cgroup v2 group.
func memoryEvents(group string) (*agentapi.MemoryEvents, error) {
	m, err := cgroup2.Load(group)
	if err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", group, err)
	}
	st, err := m.StatFiltered(cgroup2.StatMemoryEvents)
	if err != nil {
		return nil, fmt.Errorf("memory events of %s: %w", group, err)
	}
	ev := st.GetMemoryEvents()
	if ev == nil {
		return nil, nil
	}
	return &agentapi.MemoryEvents{
		Low:     ev.GetLow(),
		High:    ev.GetHigh(),
		Max:     ev.GetMax(),
		Oom:     ev.GetOom(),
		OomKill: ev.GetOomKill(),
	}, nil
}
