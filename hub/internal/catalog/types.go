package catalog

import "slices"

// Channels with a default policy in channels/.
const (
	ChannelTransit   = "transit"
	ChannelRetail    = "retail"
	ChannelMedical   = "medical"
	ChannelUtilities = "utilities"
	ChannelWelfare   = "welfare"
	ChannelOnline    = "online"
)

// Card kinds a channel may accept.
const (
	CityCard = "city_card"
	BankCard = "bank_card"
)

// PIN rules of a channel.
const (
	PINNever  = "never"
	PINAlways = "always"
	PINAbove  = "above" // a PIN is needed when the amount is greater than the threshold
)

// Concessions a product may carry.
const (
	ConcessionNone     = "none"
	ConcessionSenior   = "senior"
	ConcessionStudent  = "student"
	ConcessionDisabled = "disabled"
)

// Product is a kind of card: what it costs to hold, how much it may hold,
// and its purses (sub-accounts). It is the Go form of
// schemas/card-product.json; money is in minor units of Currency.
type Product struct {
	Code       string  `json:"code"`
	Name       string  `json:"name"`
	Named      bool    `json:"named"` // registered to an identified holder
	Currency   string  `json:"currency"`
	Deposit    int64   `json:"deposit"`
	MaxBalance int64   `json:"max_balance"` // cap on the sum of all purses
	Concession string  `json:"concession,omitempty"`
	Purses     []Purse `json:"purses"`
	// PurseOrder overrides, per channel, the order in which purses pay.
	PurseOrder map[string][]string `json:"purse_order,omitempty"`
}

// Purse is one sub-account of a product.
type Purse struct {
	Name string `json:"name"`
	// Refundable says whether the balance is paid back on cancellation.
	Refundable bool `json:"refundable"`
	// NegativeLimit is how far below zero the purse may go on channels
	// whose policy allows it.
	NegativeLimit int64 `json:"negative_limit,omitempty"`
	// ExpiresAfterDays is the inactivity after which the balance is
	// expunged; 0 means never.
	ExpiresAfterDays int `json:"expires_after_days,omitempty"`
}

// Purse returns the product's purse called name.
func (p Product) Purse(name string) (Purse, bool) {
	for _, ps := range p.Purses {
		if ps.Name == name {
			return ps, true
		}
	}
	return Purse{}, false
}

func (p Product) clone() Product {
	p.Purses = slices.Clone(p.Purses)
	if p.PurseOrder != nil {
		m := make(map[string][]string, len(p.PurseOrder))
		for k, v := range p.PurseOrder {
			m[k] = slices.Clone(v)
		}
		p.PurseOrder = m
	}
	return p
}

// Policy is what a channel accepts. It is the Go form of
// schemas/channel-policy.json; money is in minor units of Currency.
type Policy struct {
	Channel string   `json:"channel"`
	Accepts []string `json:"accepts"` // CityCard, BankCard
	// Purses may pay on the channel; no other purse is ever touched.
	Purses []string `json:"purses"`
	// PurseOrder is the default paying order, for products without their own.
	PurseOrder []string `json:"purse_order"`
	PIN        PINRule  `json:"pin"`
	MaxAmount  int64    `json:"max_amount"` // largest single transaction
	// AllowNegative lets purses go below zero down to their NegativeLimit,
	// so a bus tap never waits for a top-up.
	AllowNegative bool `json:"allow_negative"`
	// BankFallback lets a holder's linked bank card pay what the city
	// card's purses cannot, as one payment.
	BankFallback bool   `json:"bank_fallback,omitempty"`
	Currency     string `json:"currency"`
}

// PINRule says when the channel needs a PIN.
type PINRule struct {
	Required  string `json:"required"`  // PINNever, PINAlways or PINAbove
	Threshold int64  `json:"threshold"` // with PINAbove only
}

// PINRequired reports whether a transaction of amount needs a PIN. With
// PINAbove the threshold itself does not: 200 yuan exactly is PIN-free when
// the threshold is 20000.
func (pol Policy) PINRequired(amount int64) bool {
	switch pol.PIN.Required {
	case PINNever:
		return false
	case PINAbove:
		return amount > pol.PIN.Threshold
	default:
		// PINAlways, and any rule this code does not know: fail safe.
		return true
	}
}

// AcceptsCard reports whether the channel takes cards of kind (CityCard,
// BankCard). It is not called Accepts because that is the field.
func (pol Policy) AcceptsCard(kind string) bool {
	return slices.Contains(pol.Accepts, kind)
}

func (pol Policy) clone() Policy {
	pol.Accepts = slices.Clone(pol.Accepts)
	pol.Purses = slices.Clone(pol.Purses)
	pol.PurseOrder = slices.Clone(pol.PurseOrder)
	return pol
}
