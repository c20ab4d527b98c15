package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/transit"
)

func (s *server) transitRoutes() {
	s.handle("POST /v1/transit/devices", "transit.devices.create", s.addDevice)
	s.handle("GET /v1/transit/devices", "transit.read", s.listDevices)
	s.handle("GET /v1/transit/devices/{id}/taps", "transit.read", s.deviceTaps)
	s.handle("GET /v1/transit/denylist", "transit.read", s.denyList)
}

var errNoTransit = fault.E(fault.NotFound, "", "this hub runs no transit service")

// addDevice registers a validator and answers with its key, once. The
// device id is the natural key: a retry of a registration that took
// effect is refused as a duplicate rather than issuing a second key.
func (s *server) addDevice(x *exchange) error {
	if s.transit == nil {
		return errNoTransit
	}
	var req transit.DeviceRequest
	if err := decodeStrict(x.body, &req); err != nil {
		return err
	}
	d, err := s.transit.RegisterDevice(x.r.Context(), req)
	// Registration issues a MAC key, so it is audited; the key itself never
	// goes into the log. Once the device is stored, a failed audit row is
	// logged rather than answered: the key is shown only in this answer.
	detail := fmt.Sprintf("operator=%s mode=%s route=%s", req.Operator, req.Mode, req.Route)
	if aerr := x.auditDetail(req.ID, detail, err); aerr != nil {
		x.info.log.Error("api: audit of a device registration failed", "device", req.ID, "err", aerr)
	}
	if err != nil {
		return err
	}
	writeJSON(x.w, http.StatusCreated, d)
	return nil
}

func (s *server) listDevices(x *exchange) error {
	if s.transit == nil {
		return errNoTransit
	}
	ds, err := s.transit.Devices(x.r.Context(), x.r.URL.Query().Get("operator"))
	if err != nil {
		return err
	}
	writeJSON(x.w, http.StatusOK, map[string]any{"devices": ds})
	return nil
}

// TapView is a posted tap as the API shows it.
type TapView struct {
	Device   string    `json:"device"`
	Seq      int64     `json:"seq"`
	Card     string    `json:"card"`
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"`
	Route    string    `json:"route"`
	Stop     string    `json:"stop,omitempty"`
	Offline  bool      `json:"offline"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason,omitempty"`
	Fare     int64     `json:"fare"`
	Balance  int64     `json:"balance"`
	Transfer string    `json:"transfer,omitempty"`
}

func (s *server) deviceTaps(x *exchange) error {
	if s.transit == nil {
		return errNoTransit
	}
	after, limit, err := pageQuery(x.r.URL.Query())
	if err != nil {
		return err
	}
	ts, err := s.transit.DeviceTaps(x.r.Context(), x.r.PathValue("id"), after, limit)
	if err != nil {
		return err
	}
	out := make([]TapView, len(ts))
	for i, t := range ts {
		out[i] = TapView{Device: t.Device, Seq: t.Seq, Card: t.Card, At: t.At, Kind: t.Kind, Route: t.Route, Stop: t.Stop,
			Offline: t.Offline, Status: t.Status, Reason: t.Reason, Fare: t.Fare, Balance: t.Balance}
		if t.Transfer != 0 {
			out[i].Transfer = strconv.FormatInt(t.Transfer, 10)
		}
	}
	writeJSON(x.w, http.StatusOK, map[string]any{"taps": out})
	return nil
}

func (s *server) denyList(x *exchange) error {
	if s.transit == nil {
		return errNoTransit
	}
	var since int64
	if v := x.r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fault.E(fault.InvalidRequest, "since", "since must be a deny list version (a whole number ≥ 0)")
		}
		since = n
	}
	v, err := s.transit.DenyList(x.r.Context(), since)
	if err != nil {
		return err
	}
	writeJSON(x.w, http.StatusOK, v)
	return nil
}
