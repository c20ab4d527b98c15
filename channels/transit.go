package channels

import "embed"

// TransitFiles holds the default transit fare tables under transit/: one
// JSON document per network (its transfer discount, caps and concessions)
// and one per operator (its routes and their fares), each valid against
// schemas/transit-fares.json. The hub's fare engine loads them; an operator
// replaces them with files of the same shape.
//
//go:embed transit/*.json
var TransitFiles embed.FS
