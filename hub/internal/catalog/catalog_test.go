package catalog

import (
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/citycard/citycard/channels"
	"github.com/citycard/citycard/schemas"
)

func defaults(t *testing.T) *Catalog {
	t.Helper()
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDefault(t *testing.T) {
	c := defaults(t)
	var codes []string
	for _, p := range c.Products() {
		codes = append(codes, p.Code)
	}
	if want := []string{"anonymous", "senior", "standard", "student"}; !slices.Equal(codes, want) {
		t.Errorf("products = %v, want %v", codes, want)
	}
	var chans []string
	for _, pol := range c.Policies() {
		chans = append(chans, pol.Channel)
	}
	if want := []string{"medical", "online", "retail", "transit", "utilities", "welfare"}; !slices.Equal(chans, want) {
		t.Errorf("policies = %v, want %v", chans, want)
	}

	std, ok := c.Product("standard")
	if !ok {
		t.Fatal("no standard product")
	}
	want := Product{
		Code: "standard", Name: "Named citizen card", Named: true, Currency: "CNY",
		Deposit: 2000, MaxBalance: 500000, Concession: ConcessionNone,
		Purses: []Purse{
			{Name: "cash", Refundable: true, NegativeLimit: 500},
			{Name: "medical"},
			{Name: "welfare", ExpiresAfterDays: 270},
		},
		PurseOrder: map[string][]string{
			"medical": {"medical", "cash"},
			"welfare": {"welfare"},
			"transit": {"cash"},
		},
	}
	if !reflect.DeepEqual(std, want) {
		t.Errorf("standard = %+v\nwant %+v", std, want)
	}

	cases := []struct {
		code       string
		named      bool
		max        int64
		concession string
		purses     []string
	}{
		{"anonymous", false, 100000, ConcessionNone, []string{"cash"}},
		{"senior", true, 500000, ConcessionSenior, []string{"cash", "medical", "welfare"}},
		{"student", true, 500000, ConcessionStudent, []string{"cash", "medical", "welfare"}},
	}
	for _, tc := range cases {
		p, ok := c.Product(tc.code)
		if !ok {
			t.Errorf("no product %s", tc.code)
			continue
		}
		var names []string
		for _, ps := range p.Purses {
			names = append(names, ps.Name)
		}
		if p.Named != tc.named || p.MaxBalance != tc.max || p.Concession != tc.concession || p.Deposit != 2000 || !slices.Equal(names, tc.purses) {
			t.Errorf("%s = %+v", tc.code, p)
		}
	}

	transit, _ := c.Policy(ChannelTransit)
	if !transit.AllowNegative || transit.MaxAmount != 10000 || transit.AcceptsCard(BankCard) {
		t.Errorf("transit = %+v", transit)
	}
	if _, ok := c.Policy("casino"); ok {
		t.Error("found a policy for an unknown channel")
	}
	if _, ok := c.Product("gold"); ok {
		t.Error("found an unknown product")
	}
}

// Every embedded document must stand on its own against the published
// schemas, not only through this package's parser.
func TestEmbeddedDocumentsValidate(t *testing.T) {
	check := func(fsys fs.FS, dir, schema string) {
		names, err := fs.Glob(fsys, dir+"*.json")
		if err != nil || len(names) == 0 {
			t.Fatalf("%s: %v %v", dir, names, err)
		}
		for _, name := range names {
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas.Validate(schema, b); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			base := strings.TrimSuffix(name[strings.LastIndex(name, "/")+1:], ".json")
			var head struct {
				Code    string `json:"code"`
				Channel string `json:"channel"`
			}
			_ = json.Unmarshal(b, &head)
			if head.Code+head.Channel != base {
				t.Errorf("%s describes %q", name, head.Code+head.Channel)
			}
		}
	}
	check(ProductFiles, "products/", "card-product")
	check(channels.Files, "", "channel-policy")
}

const goodProduct = `{"code":"test","name":"Test","named":true,"currency":"CNY","deposit":2000,"max_balance":500000,
 "purses":[{"name":"cash","refundable":true,"negative_limit":500},{"name":"medical","refundable":false}],
 "purse_order":{"medical":["medical","cash"]}}`

const goodPolicy = `{"channel":"retail","accepts":["city_card","bank_card"],"purses":["cash"],"purse_order":["cash"],
 "pin":{"required":"above","threshold":20000},"max_amount":500000,"allow_negative":false,"currency":"CNY"}`

type violation struct{ path, keyword string }

// violationsOf digs the schema report out of a parse error.
func violationsOf(t *testing.T, err error) []violation {
	t.Helper()
	var ve *schemas.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *schemas.ValidationError inside, got %T: %v", err, err)
	}
	var out []violation
	for _, v := range ve.Violations {
		out = append(out, violation{v.InstancePath, v.Keyword})
	}
	return out
}

func TestParseProduct(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []violation // nil: accepted
	}{
		{"good", goodProduct, nil},
		{"unknown field", strings.Replace(goodProduct, `"named":true`, `"named":true,"colour":"red"`, 1),
			[]violation{{"/colour", "unevaluatedProperties"}}},
		{"unknown purse field", strings.Replace(goodProduct, `"negative_limit":500`, `"negative_limit":500,"overdraft":1`, 1),
			[]violation{{"/purses/0/overdraft", "unevaluatedProperties"}}},
		{"duplicate purse", strings.Replace(goodProduct, `{"name":"medical","refundable":false}`,
			`{"name":"medical","refundable":false},{"name":"cash","refundable":false}`, 1),
			[]violation{{"/purses/2/name", KeywordDuplicate}}},
		{"purse_order names a missing purse", strings.Replace(goodProduct, `["medical","cash"]`, `["medical","welfare"]`, 1),
			[]violation{{"/purse_order/medical/1", KeywordUnknownPurse}}},
		{"negative deposit", strings.Replace(goodProduct, `"deposit":2000`, `"deposit":-2000`, 1),
			[]violation{{"/deposit", "minimum"}}},
		{"negative purse limit", strings.Replace(goodProduct, `"negative_limit":500`, `"negative_limit":-500`, 1),
			[]violation{{"/purses/0/negative_limit", "minimum"}}},
		{"exponent money", strings.Replace(goodProduct, `"deposit":2000`, `"deposit":2e3`, 1),
			[]violation{{"/deposit", "type"}}},
		{"exponent in purse", strings.Replace(goodProduct, `"negative_limit":500`, `"negative_limit":5e2`, 1),
			[]violation{{"/purses/0/negative_limit", "type"}}},
		{"no purses", strings.Replace(strings.Replace(goodProduct, `,{"name":"medical","refundable":false}`, ``, 1),
			`"purses":[{"name":"cash","refundable":true,"negative_limit":500}]`, `"purses":[]`, 1),
			[]violation{{"/purses", "minItems"}}},
		{"fraction money", strings.Replace(goodProduct, `"max_balance":500000`, `"max_balance":500000.0`, 1),
			[]violation{{"/max_balance", "type"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseProduct([]byte(tc.doc))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if p.Code != "test" || p.Concession != ConcessionNone || len(p.Purses) != 2 {
					t.Errorf("got %+v", p)
				}
				return
			}
			if got := violationsOf(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("violations = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseNotJSON(t *testing.T) {
	if _, err := ParseProduct([]byte(`{"code":`)); !errors.Is(err, schemas.ErrInvalidJSON) {
		t.Errorf("ParseProduct = %v", err)
	}
	if _, err := ParsePolicy([]byte(`nope`)); !errors.Is(err, schemas.ErrInvalidJSON) {
		t.Errorf("ParsePolicy = %v", err)
	}
}

func TestParsePolicy(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []violation
	}{
		{"good", goodPolicy, nil},
		{"unknown field", strings.Replace(goodPolicy, `"max_amount"`, `"daily_cap":1,"max_amount"`, 1),
			[]violation{{"/daily_cap", "unevaluatedProperties"}}},
		{"order outside purses", strings.Replace(goodPolicy, `"purse_order":["cash"]`, `"purse_order":["cash","welfare"]`, 1),
			[]violation{{"/purse_order/1", KeywordUnknownPurse}}},
		{"above without threshold", strings.Replace(goodPolicy, `"pin":{"required":"above","threshold":20000}`, `"pin":{"required":"above"}`, 1),
			[]violation{{"/pin", "required"}}},
		{"threshold without above", strings.Replace(goodPolicy, `"required":"above"`, `"required":"always"`, 1),
			[]violation{{"/pin/threshold", KeywordThreshold}}},
		{"unknown card", strings.Replace(goodPolicy, `"bank_card"`, `"cash"`, 1),
			[]violation{{"/accepts/1", "enum"}}},
		{"negative max", strings.Replace(goodPolicy, `"max_amount":500000`, `"max_amount":-1`, 1),
			[]violation{{"/max_amount", "minimum"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := ParsePolicy([]byte(tc.doc))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if pol.Channel != ChannelRetail || pol.PIN.Threshold != 20000 {
					t.Errorf("got %+v", pol)
				}
				return
			}
			if got := violationsOf(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("violations = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPurseOrder(t *testing.T) {
	c := defaults(t)
	custom := Product{
		Code: "custom", Name: "Custom", Named: true, Currency: "CNY", MaxBalance: 1000,
		Purses: []Purse{{Name: "cash", Refundable: true}, {Name: "welfare"}, {Name: "medical"}},
		// welfare may not pay in shops whatever the product says
		PurseOrder: map[string][]string{"retail": {"welfare", "cash"}, "medical": {"cash"}},
	}
	if err := c.AddProduct(custom); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		product, channel string
		want             []string
	}{
		{"standard", ChannelMedical, []string{"medical", "cash"}},
		{"standard", ChannelWelfare, []string{"welfare"}},
		{"standard", ChannelTransit, []string{"cash"}},
		{"standard", ChannelRetail, []string{"cash"}},
		{"standard", ChannelUtilities, []string{"cash"}},
		{"standard", ChannelOnline, []string{"cash"}},
		{"senior", ChannelMedical, []string{"medical", "cash"}},
		{"anonymous", ChannelMedical, []string{"cash"}}, // policy default, minus the purse it lacks
		{"anonymous", ChannelWelfare, []string{}},
		{"anonymous", ChannelTransit, []string{"cash"}},
		{"custom", ChannelRetail, []string{"cash"}},
		{"custom", ChannelMedical, []string{"cash"}}, // the product's own order wins
		{"custom", ChannelWelfare, []string{"welfare"}},
		{"standard", "casino", nil},
	}
	for _, tc := range cases {
		p, ok := c.Product(tc.product)
		if !ok {
			t.Fatalf("no product %s", tc.product)
		}
		got := c.PurseOrder(p, tc.channel)
		if !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("PurseOrder(%s, %s) = %#v, want %#v", tc.product, tc.channel, got, tc.want)
		}
	}

	// An operator's policy narrows every product's order.
	override := fstest.MapFS{"medical.json": {Data: []byte(`{"channel":"medical","accepts":["city_card"],
		"purses":["cash"],"purse_order":["cash"],"pin":{"required":"always"},"max_amount":100,"allow_negative":false,"currency":"CNY"}`)}}
	if err := c.LoadPolicies(override); err != nil {
		t.Fatal(err)
	}
	std, _ := c.Product("standard")
	if got := c.PurseOrder(std, ChannelMedical); !slices.Equal(got, []string{"cash"}) {
		t.Errorf("after override PurseOrder(standard, medical) = %v", got)
	}
	if got := c.PurseOrder(std, ChannelRetail); !slices.Equal(got, []string{"cash"}) {
		t.Errorf("other policies changed: %v", got)
	}
}

func TestPINRequired(t *testing.T) {
	above := Policy{PIN: PINRule{Required: PINAbove, Threshold: 20000}}
	cases := []struct {
		name   string
		pol    Policy
		amount int64
		want   bool
	}{
		{"never", Policy{PIN: PINRule{Required: PINNever}}, 1 << 40, false},
		{"always small", Policy{PIN: PINRule{Required: PINAlways}}, 1, true},
		{"below", above, 19999, false},
		{"at threshold", above, 20000, false},
		{"above", above, 20001, true},
		{"above zero", Policy{PIN: PINRule{Required: PINAbove}}, 1, true},
		{"unknown rule fails safe", Policy{}, 1, true},
	}
	for _, tc := range cases {
		if got := tc.pol.PINRequired(tc.amount); got != tc.want {
			t.Errorf("%s: PINRequired(%d) = %v, want %v", tc.name, tc.amount, got, tc.want)
		}
	}
	c := defaults(t)
	for _, tc := range []struct {
		channel string
		amount  int64
		want    bool
	}{
		{ChannelTransit, 10000, false},
		{ChannelRetail, 20000, false},
		{ChannelRetail, 20001, true},
		{ChannelMedical, 50001, true},
		{ChannelWelfare, 20001, true},
		{ChannelOnline, 1, true},
	} {
		pol, _ := c.Policy(tc.channel)
		if got := pol.PINRequired(tc.amount); got != tc.want {
			t.Errorf("%s: PINRequired(%d) = %v, want %v", tc.channel, tc.amount, got, tc.want)
		}
	}
}

func TestAcceptsCard(t *testing.T) {
	c := defaults(t)
	cases := []struct {
		channel, kind string
		want          bool
	}{
		{ChannelTransit, CityCard, true},
		{ChannelTransit, BankCard, false},
		{ChannelRetail, BankCard, true},
		{ChannelMedical, BankCard, true},
		{ChannelUtilities, BankCard, true},
		{ChannelWelfare, BankCard, false},
		{ChannelWelfare, CityCard, true},
		{ChannelOnline, BankCard, false},
		{ChannelRetail, "cash", false},
	}
	for _, tc := range cases {
		pol, _ := c.Policy(tc.channel)
		if got := pol.AcceptsCard(tc.kind); got != tc.want {
			t.Errorf("%s accepts %s = %v, want %v", tc.channel, tc.kind, got, tc.want)
		}
	}
}

func TestAddProduct(t *testing.T) {
	c := New()
	good := Product{Code: "kids", Name: "Kids", Currency: "CNY", MaxBalance: 5000, Concession: ConcessionStudent,
		Purses: []Purse{{Name: "cash", Refundable: true}}}
	if err := c.AddProduct(good); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Product("kids")
	if !ok || !reflect.DeepEqual(got, good) {
		t.Errorf("got %+v, %v", got, ok)
	}
	// Copies out: changing what Product returned leaves the catalog alone.
	got.Purses[0].Name = "changed"
	if again, _ := c.Product("kids"); again.Purses[0].Name != "cash" {
		t.Error("Product exposes the catalog's slices")
	}

	cases := []struct {
		name string
		edit func(p *Product)
		want violation
	}{
		{"duplicate purse", func(p *Product) { p.Purses = append(p.Purses, Purse{Name: "cash"}) }, violation{"/purses/1/name", KeywordDuplicate}},
		{"order names missing purse", func(p *Product) { p.PurseOrder = map[string][]string{"retail": {"gift"}} }, violation{"/purse_order/retail/0", KeywordUnknownPurse}},
		{"negative deposit", func(p *Product) { p.Deposit = -1 }, violation{"/deposit", "minimum"}},
		{"bad code", func(p *Product) { p.Code = "K" }, violation{"/code", "pattern"}},
		{"no purses", func(p *Product) { p.Purses = nil }, violation{"/purses", "type"}},
		{"unknown concession", func(p *Product) { p.Concession = "vip" }, violation{"/concession", "enum"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := good.clone()
			p.Code = "bad"
			tc.edit(&p)
			err := c.AddProduct(p)
			if got := violationsOf(t, err); len(got) != 1 || got[0] != tc.want {
				t.Errorf("violations = %v, want [%v]", got, tc.want)
			}
			if _, ok := c.Product(p.Code); ok {
				t.Error("refused product was added")
			}
		})
	}
}

func TestAddPolicy(t *testing.T) {
	c := New()
	pol := Policy{Channel: ChannelOnline, Accepts: []string{CityCard}, Purses: []string{"cash"}, PurseOrder: []string{"cash"},
		PIN: PINRule{Required: PINAlways}, MaxAmount: 100, Currency: "CNY"}
	if err := c.AddPolicy(pol); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Policy(ChannelOnline); !ok || !reflect.DeepEqual(got, pol) {
		t.Errorf("got %+v", got)
	}
	bad := pol.clone()
	bad.PurseOrder = []string{"welfare"}
	if got := violationsOf(t, c.AddPolicy(bad)); !slices.Equal(got, []violation{{"/purse_order/0", KeywordUnknownPurse}}) {
		t.Errorf("violations = %v", got)
	}
}

func TestLoadPolicies(t *testing.T) {
	retail := func(max string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(strings.Replace(goodPolicy, "500000", max, 1))}
	}
	cases := []struct {
		name    string
		fsys    fstest.MapFS
		wantErr string // "" = loads
		schema  bool   // error carries a schema report
	}{
		{"one file", fstest.MapFS{"retail.json": retail("100")}, "", false},
		{"other files ignored", fstest.MapFS{"retail.json": retail("100"), "README.md": {Data: []byte("#")}}, "", false},
		{"empty", fstest.MapFS{}, "no policy files", false},
		{"same channel twice", fstest.MapFS{"a.json": retail("100"), "b.json": retail("200")}, `"retail" is in both a.json and b.json`, false},
		{"bad file named", fstest.MapFS{"retail.json": retail("100"), "x.json": {Data: []byte(`{"channel":"retail"}`)}}, "x.json: catalog: policy:", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults(t)
			err := c.LoadPolicies(tc.fsys)
			pol, _ := c.Policy(ChannelRetail)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if pol.MaxAmount != 100 {
					t.Errorf("max_amount = %d, override not applied", pol.MaxAmount)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			var ve *schemas.ValidationError
			if errors.As(err, &ve) != tc.schema {
				t.Errorf("schema report present = %v, want %v", !tc.schema, tc.schema)
			}
			if pol.MaxAmount != 500000 {
				t.Errorf("a failed load changed the catalog: max_amount = %d", pol.MaxAmount)
			}
		})
	}
}

func TestLoadProducts(t *testing.T) {
	c := New()
	err := c.LoadProducts(fstest.MapFS{
		"a.json": {Data: []byte(goodProduct)},
		"b.json": {Data: []byte(strings.Replace(goodProduct, `"deposit":2000`, `"deposit":-1`, 1))},
	})
	if err == nil || !strings.HasPrefix(err.Error(), "b.json: ") {
		t.Fatalf("err = %v", err)
	}
	if len(c.Products()) != 0 {
		t.Error("a failed load added products")
	}
}

func TestConcurrentUse(t *testing.T) {
	c := defaults(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			p := Product{Code: "p" + string(rune('a'+i)), Name: "P", Currency: "CNY", Purses: []Purse{{Name: "cash", Refundable: true}}}
			if err := c.AddProduct(p); err != nil {
				t.Error(err)
			}
			if err := c.LoadPolicies(channels.Files); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			std, _ := c.Product("standard")
			if got := c.PurseOrder(std, ChannelMedical); !slices.Equal(got, []string{"medical", "cash"}) {
				t.Errorf("PurseOrder = %v", got)
			}
			_ = c.Products()
			_ = c.Policies()
		}()
	}
	wg.Wait()
	if n := len(c.Products()); n != 12 {
		t.Errorf("%d products, want 12", n)
	}
}
