package vtpm

// TCGEvent and BuildTCGLog let the external tests build firmware-style
// logs with the internal builder.
type TCGEvent struct {
	PCR  uint32
	Type EventType
	Data string
}

// BuildTCGLog returns a crypto-agile log of events and the SHA-256
// digest of each, in order.
func BuildTCGLog(events []TCGEvent) ([]byte, [][32]byte) {
	b := newTCGLog()
	var digests [][32]byte
	for _, e := range events {
		digests = append(digests, b.event(e.PCR, e.Type, []byte(e.Data)))
	}
	return b.bytes(), digests
}
