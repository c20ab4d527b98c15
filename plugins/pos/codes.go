package pos

import (
	"errors"

	"github.com/citycard/citycard/schemas"
	"github.com/citycard/citycard/sdk"
)

// Response codes (field 39) the plugin answers with itself. Hub declines
// and errors are mapped through the error registry (schemas/errors.json).
const (
	rcApproved         = "00"
	rcInvalidMerchant  = "03" // unknown terminal, or field 42 is not its merchant
	rcDoNotHonour      = "05" // a decline the registry does not know, or a city card's CVV that does not verify
	rcInvalidTxn       = "12" // a transaction this host does not take, or cannot reverse
	rcInvalidAmount    = "13"
	rcInvalidCard      = "14"
	rcNoSuchIssuer     = "15" // not a city card, and bank_cards is off
	rcOriginalNotFound = "25"
	rcFormatError      = "30"
	rcNotSupported     = "40" // a void of a completion; a bank card's PIN with no zone key to translate it to
	rcExpiredCard      = "54"
	rcRestrictedCard   = "62" // the service code forbids the transaction (ATM-only, cash-only)
	rcIncorrectPIN     = "55"
	rcOriginalAmount   = "64" // a void or cancellation for another amount than the original; a refund for more than is left
	rcBatchClosed      = "77" // the batch was settled: sign on again for the next one
	rcDuplicate        = "94"
	rcNotBalanced      = "95"
	rcSystemError      = "96"
	rcNotSignedOn      = "97"
	rcPINError         = "99" // the PIN block cannot be decrypted
	rcMACError         = "A0"
)

// registryCode maps an error registry code to its ISO 8583 response code.
func registryCode(code string) string {
	if d, ok := schemas.LookupError(code); ok && d.ISO8583 != "" {
		return d.ISO8583
	}
	return ""
}

// declineCode is the field 39 of a hub decline reason.
func declineCode(reason string) string {
	if rc := registryCode(reason); rc != "" {
		return rc
	}
	return rcDoNotHonour
}

// errorCode is the field 39 of a hub error.
func errorCode(err error) string {
	var e *sdk.Error
	if errors.As(err, &e) {
		if rc := registryCode(e.Code); rc != "" {
			return rc
		}
	}
	return rcSystemError
}

// inDoubtErr reports whether a failed hub call may still have been
// applied: the hub did not answer, rather than refused.
func inDoubtErr(err error) bool {
	e := sdk.AsError(err)
	return e.Retryable || e.Code == sdk.CodeTimeout || e.Code == sdk.CodeUnavailable || e.Code == sdk.CodeInternal
}

func hasCode(err error, code string) bool {
	var e *sdk.Error
	return errors.As(err, &e) && e.Code == code
}
