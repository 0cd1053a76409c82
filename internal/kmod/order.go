package kmod

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

var (
	// ErrMissing is returned by Order when a wanted module or a hard
	// dependency is not in the module set.
	ErrMissing = errors.New("module not found")
	// ErrCycle is returned by Order when hard dependencies form a cycle.
	ErrCycle = errors.New("module dependency cycle")
)

// Order returns want and every module it needs, hard dependencies
// ("depends=") and resolvable "softdep=pre:" entries alike, sorted so that
// each module comes after everything it needs. mods is keyed by module name
// (as normalised by Normalize).
//
// A softdep name is resolved to the module of that name, else to the modules
// declaring it as an alias, leaving out CPU-specific implementations; one
// that resolves to nothing is ignored, as are cycles that pass through a
// softdep. The result depends only on the contents of mods and the set of
// names in want, so image builds are reproducible.
func Order(mods map[string]Info, want []string) ([]string, error) {
	o := &orderer{
		mods:    mods,
		aliases: aliasIndex(mods),
		state:   make(map[string]visitState, len(mods)),
	}
	roots := make([]string, 0, len(want))
	for _, w := range want {
		roots = append(roots, Normalize(w))
	}
	sort.Strings(roots)
	for _, r := range roots {
		if _, ok := mods[r]; !ok {
			return nil, fmt.Errorf("%w: %s", ErrMissing, r)
		}
		if err := o.visit(r, true); err != nil {
			return nil, err
		}
	}
	return o.out, nil
}

type visitState int

const (
	unvisited visitState = iota
	visiting
	visited
)

// frame is one module on the depth-first search path, with the kind of edge
// that led to it.
type frame struct {
	name string
	hard bool
}

type orderer struct {
	mods    map[string]Info
	aliases map[string][]string // alias -> names of non CPU-specific modules
	state   map[string]visitState
	stack   []frame
	out     []string
}

func (o *orderer) visit(name string, hard bool) error {
	switch o.state[name] {
	case visited:
		return nil
	case visiting:
		return o.cycle(name, hard)
	}
	o.state[name] = visiting
	o.stack = append(o.stack, frame{name: name, hard: hard})

	info := o.mods[name]
	deps := append([]string(nil), info.Depends...)
	sort.Strings(deps)
	for _, d := range deps {
		if _, ok := o.mods[d]; !ok {
			return fmt.Errorf("%w: %s (needed by %s)", ErrMissing, d, name)
		}
		if err := o.visit(d, true); err != nil {
			return err
		}
	}
	for _, s := range o.resolveSoft(name, info.SoftPre) {
		if err := o.visit(s, false); err != nil {
			return err
		}
	}

	o.stack = o.stack[:len(o.stack)-1]
	o.state[name] = visited
	o.out = append(o.out, name)
	return nil
}

// cycle handles reaching name again while it is on the search path: an error
// when every edge of the loop is a hard dependency, else the soft edge is
// dropped.
func (o *orderer) cycle(name string, hard bool) error {
	if !hard {
		return nil
	}
	start := len(o.stack) - 1
	for ; start >= 0 && o.stack[start].name != name; start-- {
	}
	path := []string{}
	for i := start; i < len(o.stack); i++ {
		if i > start && !o.stack[i].hard {
			return nil
		}
		path = append(path, o.stack[i].name)
	}
	path = append(path, name)
	return fmt.Errorf("%w: %s", ErrCycle, strings.Join(path, " -> "))
}

// resolveSoft maps softdep names to module names, sorted and without
// duplicates or self references.
func (o *orderer) resolveSoft(self string, names []string) []string {
	seen := map[string]bool{}
	for _, n := range names {
		if _, ok := o.mods[n]; ok {
			seen[n] = true
			continue
		}
		for _, m := range o.aliases[n] {
			seen[m] = true
		}
	}
	delete(seen, self)
	return sortedKeys(seen)
}

func aliasIndex(mods map[string]Info) map[string][]string {
	idx := map[string][]string{}
	for _, name := range sortedKeys(mods) {
		info := mods[name]
		if info.isCPUSpecific() {
			continue
		}
		for _, a := range info.Aliases {
			idx[a] = append(idx[a], name)
		}
	}
	return idx
}
