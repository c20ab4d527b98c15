// Package cardcrypto holds the card-security primitives a bank front end
// needs: Luhn and PAN masking, track 2 parsing, CVV/CVV2/iCVV, ISO 9564
// format 0 PIN blocks, ANSI X9.19 and UnionPay ECB MACs, key check values,
// working-key exchange under a terminal master key, and an at-rest key store.
//
// Secrets never appear in errors or logs: a full card number is held as a PAN,
// which formats masked (first 6 and last 4 digits), and a key is held as a
// Key, which formats as its check value only. Secrets are compared in constant
// time.
package cardcrypto
