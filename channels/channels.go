// Package channels holds the default channel policies as data: one JSON
// document per channel, each valid against schemas/channel-policy.json and
// named after the channel it describes. The hub's catalog loads them; an
// operator overrides them with files of the same shape.
package channels

import "embed"

// Files holds the default policies, one <channel>.json per channel.
//
//go:embed *.json
var Files embed.FS
