package pluginhost

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the host's per-plugin Prometheus series.
type metrics struct {
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	restarts *prometheus.CounterVec
	up       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "citycard", Subsystem: "plugin", Name: "handle_total",
			Help: "Messages handed to plugins, by plugin and outcome (ok, error, unavailable, timeout).",
		}, []string{"plugin", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "citycard", Subsystem: "plugin", Name: "handle_seconds",
			Help: "Time for a plugin to handle one message, including the round trip.",
			// A round trip costs about 150 µs; partner links take up to seconds.
			Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"plugin"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "citycard", Subsystem: "plugin", Name: "restarts_total",
			Help: "Times the host restarted a plugin after a crash or failed health checks.",
		}, []string{"plugin"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "citycard", Subsystem: "plugin", Name: "up",
			Help: "1 while the plugin is running and configured, else 0.",
		}, []string{"plugin"}),
	}
	if reg == nil {
		return m
	}
	m.calls = register(reg, m.calls)
	m.latency = register(reg, m.latency)
	m.restarts = register(reg, m.restarts)
	m.up = register(reg, m.up)
	return m
}

// register registers c, or returns the collector already registered under
// its name, so two hosts (as in tests) can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		// A clash with a different kind of metric: keep ours unregistered
		// rather than fail the hub over a metric.
	}
	return c
}
