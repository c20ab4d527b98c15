// Package catalog holds the card products and channel policies the hub
// runs with. Both are data: JSON documents checked against schemas/ and the
// rules the schemas cannot express. The defaults are embedded (products/
// here, policies in the top-level channels package); operators override
// them by loading their own documents.
package catalog

import (
	"cmp"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"sync"

	"github.com/citycard/citycard/channels"
)

// ProductFiles holds the default products, one <code>.json per product.
//
//go:embed products/*.json
var ProductFiles embed.FS

// Catalog is a set of products and policies, safe for concurrent use.
// Values handed in and out are copies, so callers cannot change the catalog
// behind its back.
type Catalog struct {
	mu       sync.RWMutex
	products map[string]Product
	policies map[string]Policy
}

// New returns an empty catalog.
func New() *Catalog {
	return &Catalog{products: map[string]Product{}, policies: map[string]Policy{}}
}

// Default returns a catalog of the embedded products and the policies in
// channels.Files.
func Default() (*Catalog, error) {
	c := New()
	products, err := fs.Sub(ProductFiles, "products")
	if err != nil {
		return nil, err
	}
	if err := c.LoadProducts(products); err != nil {
		return nil, err
	}
	if err := c.LoadPolicies(channels.Files); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadProducts parses every *.json at the root of fsys as a product and
// adds them, replacing products with the same code. Nothing is added unless
// every file is valid and no code appears twice.
func (c *Catalog) LoadProducts(fsys fs.FS) error {
	parsed, err := loadAll(fsys, "product", ParseProduct, func(p Product) string { return p.Code })
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parsed {
		c.products[p.Code] = p
	}
	return nil
}

// LoadPolicies parses every *.json at the root of fsys as a channel policy
// and adds them, replacing policies for the same channel. Nothing is added
// unless every file is valid and no channel appears twice.
func (c *Catalog) LoadPolicies(fsys fs.FS) error {
	parsed, err := loadAll(fsys, "policy", ParsePolicy, func(p Policy) string { return p.Channel })
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parsed {
		c.policies[p.Channel] = p
	}
	return nil
}

func loadAll[T any](fsys fs.FS, what string, parse func([]byte) (T, error), key func(T) string) ([]T, error) {
	names, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("catalog: no %s files (*.json)", what)
	}
	seen := map[string]string{}
	var out []T
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		v, err := parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		k := key(v)
		if prev, dup := seen[k]; dup {
			return nil, fmt.Errorf("catalog: %s %q is in both %s and %s", what, k, prev, name)
		}
		seen[k] = name
		out = append(out, v)
	}
	return out, nil
}

// AddProduct checks p as ParseProduct would and adds it, replacing any
// product with the same code.
func (c *Catalog) AddProduct(p Product) error {
	p, err := roundTrip(p, ParseProduct)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.products[p.Code] = p
	return nil
}

// AddPolicy checks pol as ParsePolicy would and adds it, replacing any
// policy for the same channel.
func (c *Catalog) AddPolicy(pol Policy) error {
	pol, err := roundTrip(pol, ParsePolicy)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.policies[pol.Channel] = pol
	return nil
}

// roundTrip sends a Go value through its JSON form so values built in code
// meet exactly the checks documents do, and the catalog keeps its own copy.
func roundTrip[T any](v T, parse func([]byte) (T, error)) (T, error) {
	b, err := marshal(v)
	if err != nil {
		var zero T
		return zero, err
	}
	return parse(b)
}

// Product returns the product with code.
func (c *Catalog) Product(code string) (Product, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.products[code]
	return p.clone(), ok
}

// Products returns every product, sorted by code.
func (c *Catalog) Products() []Product {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Product, 0, len(c.products))
	for _, p := range c.products {
		out = append(out, p.clone())
	}
	slices.SortFunc(out, func(a, b Product) int { return cmp.Compare(a.Code, b.Code) })
	return out
}

// Policy returns the policy of channel.
func (c *Catalog) Policy(channel string) (Policy, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	pol, ok := c.policies[channel]
	return pol.clone(), ok
}

// Policies returns every policy, sorted by channel.
func (c *Catalog) Policies() []Policy {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Policy, 0, len(c.policies))
	for _, pol := range c.policies {
		out = append(out, pol.clone())
	}
	slices.SortFunc(out, func(a, b Policy) int { return cmp.Compare(a.Channel, b.Channel) })
	return out
}

// PurseOrder returns the purses of p that pay on channel, in paying order:
// the product's own order for the channel if it has one, else the policy's
// default, keeping only purses the policy allows and the product has. It is
// empty when no purse may pay (the anonymous card on the welfare channel)
// and nil when the channel has no policy.
func (c *Catalog) PurseOrder(p Product, channel string) []string {
	c.mu.RLock()
	pol, ok := c.policies[channel]
	c.mu.RUnlock()
	if !ok {
		return nil
	}
	order, own := p.PurseOrder[channel]
	if !own {
		order = pol.PurseOrder
	}
	out := []string{}
	for _, name := range order {
		if _, has := p.Purse(name); has && slices.Contains(pol.Purses, name) && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}
