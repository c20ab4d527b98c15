package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the hub's Prometheus metrics: HTTP requests, ledger writes
// and the group commit's batch sizes and commit latency. Hub wiring creates
// one, passes Observe to the ledger engine and the same value to New.
type Metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	postings     *prometheus.CounterVec
	batchSize    prometheus.Histogram
	commit       prometheus.Histogram
	commitErrors prometheus.Counter
	gatherer     prometheus.Gatherer
}

// NewMetrics creates the metrics and registers them with reg. With a nil
// reg it uses a fresh registry that also carries the Go runtime and process
// collectors, so several hubs in one process (tests) do not collide.
// Metrics already registered with reg by an earlier call are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	m := &Metrics{}
	m.requests = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "citycard_http_requests_total",
		Help: "HTTP requests answered, by route pattern and status code.",
	}, []string{"route", "status"}))
	m.duration = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "citycard_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route"}))
	m.postings = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "citycard_postings_total",
		Help: "Ledger operations committed through the API (idempotent replays excluded), by action.",
	}, []string{"action"}))
	m.batchSize = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "citycard_ledger_batch_size",
		Help:    "Requests committed together by one group commit.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	}))
	m.commit = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "citycard_ledger_commit_seconds",
		Help:    "Latency of one group commit's database transaction.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}))
	m.commitErrors = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "citycard_ledger_commit_errors_total",
		Help: "Group commits the store refused (their requests were answered unavailable).",
	}))
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	} else {
		m.gatherer = prometheus.DefaultGatherer
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// Observe records one group commit: its size in requests, how long the
// database transaction took and whether it failed. It has the signature of
// ledger.Config.Observe.
func (m *Metrics) Observe(size int, d time.Duration, err error) {
	if err != nil {
		m.commitErrors.Inc()
		return
	}
	m.batchSize.Observe(float64(size))
	m.commit.Observe(d.Seconds())
}

func (m *Metrics) request(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *Metrics) posted(action string) { m.postings.WithLabelValues(action).Inc() }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}
