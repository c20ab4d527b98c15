// Package proto holds the CityCard plugin protocol definitions; the
// generated Go code lives in the versioned packages below it, committed so
// that building the sdk needs no protoc.
//
// To regenerate after editing a .proto (only ever a new major version: v1
// is frozen), install protoc (Debian: protobuf-compiler), protoc-gen-go at
// the google.golang.org/protobuf version in go.mod and protoc-gen-go-grpc,
// then run `go generate ./sdk/proto`.
package proto

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative citycard/plugin/v1/plugin.proto
