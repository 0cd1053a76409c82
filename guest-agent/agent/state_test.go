package agent

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestContainerLifecycle(t *testing.T) {
	tests := []struct {
		from    status
		event   event
		want    status
		wantErr bool
	}{
		{statusCreated, eventStart, statusRunning, false},
		{statusCreated, eventExit, statusStopped, false},
		{statusCreated, eventPause, statusCreated, true},
		{statusCreated, eventResume, statusCreated, true},
		{statusRunning, eventPause, statusPaused, false},
		{statusRunning, eventExit, statusStopped, false},
		{statusRunning, eventStart, statusRunning, true},
		{statusRunning, eventResume, statusRunning, true},
		{statusPaused, eventResume, statusRunning, false},
		{statusPaused, eventExit, statusStopped, false},
		{statusPaused, eventPause, statusPaused, true},
		{statusPaused, eventStart, statusPaused, true},
		{statusStopped, eventStart, statusStopped, true},
		{statusStopped, eventPause, statusStopped, true},
		{statusStopped, eventResume, statusStopped, true},
		{statusStopped, eventExit, statusStopped, true},
	}
	for _, tt := range tests {
		t.Run(tt.from.String()+"/"+tt.event.String(), func(t *testing.T) {
			got, err := containerLifecycle.next("container c", tt.from, tt.event)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Fatalf("next = %v, %v; want a failed-precondition error", got, err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("next = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProcessLifecycle(t *testing.T) {
	tests := []struct {
		from    status
		event   event
		want    status
		wantErr bool
	}{
		{statusCreated, eventStart, statusRunning, false},
		{statusCreated, eventExit, statusStopped, false},
		{statusRunning, eventExit, statusStopped, false},
		{statusRunning, eventStart, statusRunning, true},
		{statusRunning, eventPause, statusRunning, true},
		{statusStopped, eventExit, statusStopped, true},
		{statusStopped, eventStart, statusStopped, true},
	}
	for _, tt := range tests {
		t.Run(tt.from.String()+"/"+tt.event.String(), func(t *testing.T) {
			got, err := processLifecycle.next("exec e", tt.from, tt.event)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("next = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	tests := []struct {
		name    string
		table   map[op][]status
		status  status
		op      op
		wantErr error
	}{
		{"exec in running", containerOps, statusRunning, opExec, nil},
		{"exec in created", containerOps, statusCreated, opExec, nil},
		{"exec in paused", containerOps, statusPaused, opExec, errdefs.ErrFailedPrecondition},
		{"exec in stopped", containerOps, statusStopped, opExec, errdefs.ErrFailedPrecondition},
		{"delete running container", containerOps, statusRunning, opDelete, errdefs.ErrFailedPrecondition},
		{"delete paused container", containerOps, statusPaused, opDelete, errdefs.ErrFailedPrecondition},
		{"delete stopped container", containerOps, statusStopped, opDelete, nil},
		{"delete created container", containerOps, statusCreated, opDelete, nil},
		{"signal stopped container", containerOps, statusStopped, opSignal, errdefs.ErrNotFound},
		{"signal paused container", containerOps, statusPaused, opSignal, nil},
		{"delete running exec", processOps, statusRunning, opDelete, errdefs.ErrFailedPrecondition},
		{"delete stopped exec", processOps, statusStopped, opDelete, nil},
		{"signal stopped exec", processOps, statusStopped, opSignal, errdefs.ErrNotFound},
		{"write to stopped exec", processOps, statusStopped, opWriteStdin, errdefs.ErrFailedPrecondition},
		{"resize running exec", processOps, statusRunning, opResize, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := allowed(tt.table, "thing", tt.status, tt.op)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("allowed = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
