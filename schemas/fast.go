package schemas

import "bytes"

// fast holds quick checks for the schemas on the hub's hot paths. A quick
// check only ever says "valid" for a document the schema accepts; when it
// says no (or is not sure: an escaped string, a number written as 1.0, a
// key given twice) Validate runs the schema itself, which is the authority
// and says what is wrong. So a quick check may be stricter than its
// schema, never looser; TestFastChecksAgree holds them to that.
var fast = map[string]func(doc []byte) bool{
	"msg-transit-taps-v1": fastTransitTaps,
}

// scanner reads the strict subset of JSON the quick checks accept: ASCII
// strings without escapes, integers without sign, fraction or exponent,
// true and false. Anything else stops it.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c after any whitespace.
func (s *scanner) byte(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// peek returns the next byte after whitespace, or 0.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str reads a string of printable ASCII without escapes and returns its
// bytes within the document, without copying them.
func (s *scanner) str() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			v := s.b[start:s.i]
			s.i++
			return v, true
		}
		if c < ' ' || c > '~' || c == '\\' {
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// uint reads a positive integer of at most 18 digits, without a leading 0.
func (s *scanner) uint() bool {
	s.ws()
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	n := s.i - start
	if n == 0 || n > 18 || s.b[start] == '0' {
		return false
	}
	// A fraction or exponent would follow the digits: leave it to the schema.
	if s.i < len(s.b) {
		if c := s.b[s.i]; c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// bool reads true or false.
func (s *scanner) bool() bool {
	s.ws()
	rest := s.b[s.i:]
	switch {
	case bytes.HasPrefix(rest, []byte("true")):
		s.i += 4
	case bytes.HasPrefix(rest, []byte("false")):
		s.i += 5
	default:
		return false
	}
	return true
}

// end reports whether only whitespace is left.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

func printableASCII(v []byte, lo byte) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < lo || c > '~' || c == '|' {
			return false
		}
	}
	return true
}

// fastTransitTaps is schemas/msg-transit-taps-v1.json as code.
func fastTransitTaps(doc []byte) bool {
	s := &scanner{b: doc}
	if !s.byte('{') {
		return false
	}
	if k, ok := s.str(); !ok || string(k) != "taps" || !s.byte(':') || !s.byte('[') {
		return false
	}
	n := 0
	for {
		if !s.tap() {
			return false
		}
		n++
		if s.byte(',') {
			continue
		}
		if !s.byte(']') {
			return false
		}
		break
	}
	return n >= 1 && n <= 1000 && s.byte('}') && s.end()
}

// tap reads one tap object.
func (s *scanner) tap() bool {
	if !s.byte('{') {
		return false
	}
	const (
		device = 1 << iota
		seq
		card
		at
		kind
		route
		stop
		offline
		mac
		required = device | seq | card | at | kind | route | mac
	)
	seen := 0
	for first := true; ; first = false {
		if !first && !s.byte(',') {
			break
		}
		if first && s.peek() == '}' {
			break
		}
		k, ok := s.str()
		if !ok || !s.byte(':') {
			return false
		}
		var bit int
		switch string(k) {
		case "device":
			v, ok := s.str()
			if !ok || len(v) < 1 || len(v) > 64 || !printableASCII(v, '!') {
				return false
			}
			bit = device
		case "seq":
			if !s.uint() {
				return false
			}
			bit = seq
		case "card":
			v, ok := s.str()
			if !ok || len(v) < 12 || len(v) > 19 {
				return false
			}
			for i := 0; i < len(v); i++ {
				if v[i] < '0' || v[i] > '9' {
					return false
				}
			}
			bit = card
		case "at":
			if _, ok := s.str(); !ok {
				return false
			}
			bit = at
		case "kind":
			v, ok := s.str()
			if !ok || (string(v) != "on" && string(v) != "off") {
				return false
			}
			bit = kind
		case "route":
			v, ok := s.str()
			if !ok || len(v) < 1 || len(v) > 32 || !printableASCII(v, ' ') {
				return false
			}
			bit = route
		case "stop":
			v, ok := s.str()
			if !ok || len(v) > 32 || !printableASCII(v, ' ') {
				return false
			}
			bit = stop
		case "offline":
			if !s.bool() {
				return false
			}
			bit = offline
		case "mac":
			v, ok := s.str()
			if !ok || len(v) != 16 {
				return false
			}
			for i := 0; i < len(v); i++ {
				c := v[i]
				if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
					return false
				}
			}
			bit = mac
		default:
			return false
		}
		if seen&bit != 0 {
			return false // a key given twice: the schema decides
		}
		seen |= bit
	}
	return s.byte('}') && seen&required == required
}
