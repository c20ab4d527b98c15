package channels

import (
	"encoding/json"
	"io/fs"
	"slices"
	"testing"

	"github.com/citycard/citycard/schemas"
)

func TestPolicies(t *testing.T) {
	names, err := fs.Glob(Files, "*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"medical.json", "online.json", "retail.json", "transit.json", "utilities.json", "welfare.json"}
	if !slices.Equal(names, want) {
		t.Fatalf("files = %v, want %v", names, want)
	}
	cases := []struct {
		channel       string
		accepts       []string
		purseOrder    []string
		pin           string
		allowNegative bool
	}{
		{"transit", []string{"city_card"}, []string{"cash"}, "never", true},
		{"retail", []string{"city_card", "bank_card"}, []string{"cash"}, "above", false},
		{"medical", []string{"city_card", "bank_card"}, []string{"medical", "cash"}, "above", false},
		{"utilities", []string{"city_card", "bank_card"}, []string{"cash"}, "above", false},
		{"welfare", []string{"city_card"}, []string{"welfare"}, "above", false},
		{"online", []string{"city_card"}, []string{"cash"}, "always", false},
	}
	for _, tc := range cases {
		t.Run(tc.channel, func(t *testing.T) {
			b, err := Files.ReadFile(tc.channel + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas.Validate("channel-policy", b); err != nil {
				t.Fatal(err)
			}
			var p struct {
				Channel       string   `json:"channel"`
				Accepts       []string `json:"accepts"`
				PurseOrder    []string `json:"purse_order"`
				AllowNegative bool     `json:"allow_negative"`
				PIN           struct {
					Required string `json:"required"`
				} `json:"pin"`
			}
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			if p.Channel != tc.channel {
				t.Errorf("channel = %q in %s.json", p.Channel, tc.channel)
			}
			if !slices.Equal(p.Accepts, tc.accepts) {
				t.Errorf("accepts = %v, want %v", p.Accepts, tc.accepts)
			}
			if !slices.Equal(p.PurseOrder, tc.purseOrder) {
				t.Errorf("purse_order = %v, want %v", p.PurseOrder, tc.purseOrder)
			}
			if p.PIN.Required != tc.pin {
				t.Errorf("pin.required = %q, want %q", p.PIN.Required, tc.pin)
			}
			if p.AllowNegative != tc.allowNegative {
				t.Errorf("allow_negative = %v", p.AllowNegative)
			}
		})
	}
}
