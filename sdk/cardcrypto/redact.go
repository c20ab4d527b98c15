package cardcrypto

import (
	"encoding/json"
	"regexp"
	"strings"
)

// sensitiveKeys are JSON object keys whose string values are secrets
// whatever they hold.
var sensitiveKeys = map[string]bool{"pin": true, "pin_block": true, "old_pin": true, "track2": true, "cvv": true, "cvv2": true}

// RedactJSON returns doc with every card number in it masked (a string of
// 13 to 19 digits whose check digit holds, unless keep says it may stay
// whole) and every PIN, PIN block, track 2 and CVV replaced by asterisks,
// at any depth. A document that is not JSON is returned as a string of
// asterisks of its length: it cannot be told safe.
func RedactJSON(doc []byte, keep func(number string) bool) []byte {
	if len(doc) == 0 {
		return doc
	}
	var v any
	d := json.NewDecoder(strings.NewReader(string(doc)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return []byte(strings.Repeat("*", len(doc)))
	}
	out, err := json.Marshal(redact(v, "", keep))
	if err != nil {
		return []byte(strings.Repeat("*", len(doc)))
	}
	return out
}

func redact(v any, key string, keep func(string) bool) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = redact(e, k, keep)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = redact(e, key, keep)
		}
		return t
	case string:
		switch {
		case sensitiveKeys[strings.ToLower(key)]:
			return strings.Repeat("*", len(t))
		case looksLikePAN(t) && (keep == nil || !keep(t)):
			return MaskPAN(t)
		}
		// A message's payload may be carried as JSON inside a string.
		if strings.HasPrefix(strings.TrimSpace(t), "{") {
			return string(RedactJSON([]byte(t), keep))
		}
		// Free text may name a card.
		return digitRuns.ReplaceAllStringFunc(t, func(n string) string {
			if looksLikePAN(n) && (keep == nil || !keep(n)) {
				return MaskPAN(n)
			}
			return n
		})
	}
	return v
}

var digitRuns = regexp.MustCompile(`[0-9]{13,19}`)

func looksLikePAN(s string) bool {
	if len(s) < 13 || len(s) > 19 || strings.Trim(s, "0123456789") != "" {
		return false
	}
	return LuhnValid(s)
}
