package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// selfRetryable is an error of another package that says it is retryable
// without importing bus.
type selfRetryable struct{ retry bool }

func (e selfRetryable) Error() string   { return "plugin restarting" }
func (e selfRetryable) Retryable() bool { return e.retry }

func TestIsRetryable(t *testing.T) {
	base := errors.New("bank host busy")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", base, false},
		{"marked", Retryable(base), true},
		{"marked then wrapped", fmt.Errorf("top-up: %w", Retryable(base)), true},
		{"joined with a plain one", errors.Join(base, Retryable(base)), true},
		{"joined plain ones", errors.Join(base, base), false},
		{"says so itself", fmt.Errorf("call: %w", selfRetryable{true}), true},
		{"says it is not", selfRetryable{false}, false},
		{"context deadline alone", context.DeadlineExceeded, false},
		{"panic", &PanicError{Value: "x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsRetryable(tt.err); got != tt.want {
				t.Fatalf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if Retryable(nil) != nil {
		t.Fatal("Retryable(nil) != nil")
	}
	if !errors.Is(Retryable(base), base) || Retryable(base).Error() != base.Error() {
		t.Fatal("Retryable hides its cause")
	}
}
