package ledger_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

func TestCheckedAdd(t *testing.T) {
	cases := []struct {
		a, b int64
		want int64
		ok   bool
	}{
		{1, 2, 3, true},
		{math.MaxInt64, 0, math.MaxInt64, true},
		{math.MaxInt64, 1, 0, false},
		{math.MaxInt64 - 5, 5, math.MaxInt64, true},
		{math.MinInt64, -1, 0, false},
		{math.MinInt64, math.MaxInt64, -1, true},
		{-5, 3, -2, true},
		{math.MaxInt64, math.MaxInt64, 0, false},
	}
	for _, c := range cases {
		got, ok := ledger.CheckedAdd(c.a, c.b)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("CheckedAdd(%d, %d) = %d, %v; want %d, %v", c.a, c.b, got, ok, c.want, c.ok)
		}
	}
}

// TestOverflowRefused: an amount that would carry a sum or an account's
// total past int64 is refused as invalid_amount on "amount", never wrapped
// into a decline, and leaves the books as they were; an amount that fits
// every total but not the balance is still an ordinary decline.
func TestOverflowRefused(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		eng, err := ledger.Open(ctx, st, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		if _, err := eng.Submit(ctx, move{"cash", "purse:a", 500, false}, ledger.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name string
			op   ledger.Op
			code string
		}{
			{"top-up past the purse's credits", move{"cash", "purse:a", math.MaxInt64, false}, fault.InvalidAmount},
			{"entries that cannot sum", move{"cash", "purse:a", math.MinInt64, false}, fault.InvalidAmount},
			{"spend that fits every total but not the balance", spend{"purse:a", "merchant:m", math.MaxInt64}, fault.InsufficientFunds},
			{"ordinary spend", spend{"purse:a", "merchant:m", 400}, ""},
			{"spend past the purse's debits", spend{"purse:a", "merchant:m", math.MaxInt64}, fault.InvalidAmount},
			{"spend past the merchant's credits", spend{"purse:a", "merchant:m", math.MaxInt64 - 399}, fault.InvalidAmount},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				_, err := eng.Submit(ctx, c.op, ledger.SubmitOptions{})
				if c.code == "" {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if fault.CodeOf(err) != c.code {
					t.Fatalf("got %v, want %s", err, c.code)
				}
				var fe *fault.Error
				if c.code == fault.InvalidAmount && (!asFault(err, &fe) || fe.Field != "amount") {
					t.Fatalf("overflow without the field amount: %v", err)
				}
			})
		}
		eng.Close()
		if got := balanceOf(t, st, "purse:a"); got != 100 {
			t.Fatalf("purse:a holds %d, want 100", got)
		}
		if got := balanceOf(t, st, "merchant:m"); got != 400 {
			t.Fatalf("merchant:m holds %d, want 400", got)
		}
		if r := mustVerify(t, st); r.Transfers != 2 {
			t.Fatalf("%d transfers, want 2", r.Transfers)
		}
	})
}

func asFault(err error, fe **fault.Error) bool { return errors.As(err, fe) }
