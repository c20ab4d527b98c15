package cards

import (
	"sync"

	"github.com/citycard/citycard/hub/internal/catalog"
)

// rules caches the catalogue's products, channel policies and purse orders:
// they are read on every payment, the catalogue hands out copies under a
// lock, and they do not change while the hub runs.
type rules struct {
	cat      *catalog.Catalog
	products sync.Map // code → catalog.Product
	policies sync.Map // channel → catalog.Policy
	orders   sync.Map // product + "/" + channel → []string
}

func (r *rules) product(code string) (catalog.Product, bool) {
	if v, ok := r.products.Load(code); ok {
		return v.(catalog.Product), true
	}
	p, ok := r.cat.Product(code)
	if ok {
		r.products.Store(code, p)
	}
	return p, ok
}

func (r *rules) policy(channel string) (catalog.Policy, bool) {
	if v, ok := r.policies.Load(channel); ok {
		return v.(catalog.Policy), true
	}
	pol, ok := r.cat.Policy(channel)
	if ok {
		r.policies.Store(channel, pol)
	}
	return pol, ok
}

func (r *rules) purseOrder(p catalog.Product, channel string) []string {
	key := p.Code + "/" + channel
	if v, ok := r.orders.Load(key); ok {
		return v.([]string)
	}
	order := r.cat.PurseOrder(p, channel)
	r.orders.Store(key, order)
	return order
}
