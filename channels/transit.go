package channels

import "embed"

// TransitFiles holds the default transit fare tables under transit/: one
// JSON document per network (its transfer discount, caps and concessions)
// and one per operator (its routes and their fares), each valid against
// schemas/transit-fares.json. The hub's transit service prices with them
// (fares.Default); other tables of the same shape are loaded with
// fares.Load or fares.LoadFS and given as transit.Options.Fares.
//
//go:embed transit/*.json
var TransitFiles embed.FS
