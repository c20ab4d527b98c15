package fault

// Codes of the error registry (schemas/errors.json). The test fails when this
// list and the registry drift apart.

// Errors: the request could not be carried out.
const (
	InvalidRequest         = "invalid_request"          // The request is not valid
	InvalidJSON            = "invalid_json"             // The request body is not valid JSON
	UnknownField           = "unknown_field"            // The request has a field this API does not know
	UnsupportedMediaType   = "unsupported_media_type"   // The request body must be application/json
	InvalidAmount          = "invalid_amount"           // The amount is not valid
	CurrencyMismatch       = "currency_mismatch"        // The currency does not match the account
	LuhnFailed             = "luhn_failed"              // The card number fails its check digit
	PINInvalidFormat       = "pin_invalid_format"       // A PIN is exactly six digits
	CaptureExceedsHold     = "capture_exceeds_hold"     // The capture is larger than the hold
	IdempotencyKeyRequired = "idempotency_key_required" // Write requests need an Idempotency-Key header
	Unauthorized           = "unauthorized"             // Authentication is required
	Forbidden              = "forbidden"                // This operator may not do this
	CardNotFound           = "card_not_found"           // No such card
	HoldNotFound           = "hold_not_found"           // No such hold
	TransferNotFound       = "transfer_not_found"       // No such transfer
	ProductNotFound        = "product_not_found"        // No such card product
	NotFound               = "not_found"                // Not found
	HoldNotPending         = "hold_not_pending"         // The hold was already posted, voided or expired
	AlreadyReversed        = "already_reversed"         // The transfer was already reversed
	NotReversible          = "not_reversible"           // The transfer cannot be reversed
	OutstandingDebt        = "outstanding_debt"         // The card owes money; settle it first
	HoldsPending           = "holds_pending"            // The card has pending holds
	Conflict               = "conflict"                 // The request conflicts with the current state
	Duplicate              = "duplicate"                // It already exists
	IdempotencyConflict    = "idempotency_conflict"     // The Idempotency-Key was already used with a different request
	Internal               = "internal"                 // Internal error
	Unavailable            = "unavailable"              // The service is unavailable; try again later
	Timeout                = "timeout"                  // The request timed out
	InProgress             = "in_progress"              // A request with this key is still being carried out; ask again
	NoLinkedBankCard       = "no_linked_bank_card"      // The card has no linked bank card
	BillNotFound           = "bill_not_found"           // No such medical bill
	FeeLinesMismatch       = "fee_lines_mismatch"       // The bill's fee lines do not add up to its total
	SchemaInvalid          = "schema_invalid"           // The message does not match its schema
	ConfigInvalid          = "config_invalid"           // The plugin configuration is not valid
	DescriptorInvalid      = "descriptor_invalid"       // The plugin describes itself wrongly
	UnsupportedMessageType = "unsupported_message_type" // The plugin does not handle this message type
	NotConfigured          = "not_configured"           // The plugin has not been configured yet
	DeviceUnknown          = "device_unknown"           // The transit device is not registered or is retired
	MacInvalid             = "mac_invalid"              // The MAC does not match: the message was forged or altered
	TapInFuture            = "tap_in_future"            // The tap is dated in the future
	TapTooOld              = "tap_too_old"              // The tap is too old to be posted
)

// Declines: the transaction was understood and refused; answered with 200.
const (
	CardNotActive            = "card_not_active"            // The card is not active
	CardFrozen               = "card_frozen"                // The card is frozen
	CardLost                 = "card_lost"                  // The card was reported lost
	CardClosed               = "card_closed"                // The card was cancelled
	InsufficientFunds        = "insufficient_funds"         // Insufficient funds
	ExceedsMaxBalance        = "exceeds_max_balance"        // The balance would exceed the card's maximum
	ExceedsLimit             = "exceeds_limit"              // The amount exceeds the limit
	PINRequired              = "pin_required"               // A PIN is required
	PINIncorrect             = "pin_incorrect"              // Incorrect PIN
	PINLocked                = "pin_locked"                 // Too many incorrect PINs; the PIN is locked
	ChannelNotAllowed        = "channel_not_allowed"        // The card cannot be used on this channel
	PurseNotAllowed          = "purse_not_allowed"          // No purse of this card may pay on this channel
	MerchantNotFound         = "merchant_not_found"         // Unknown merchant
	TerminalNotFound         = "terminal_not_found"         // Unknown terminal
	TerminalMerchantMismatch = "terminal_merchant_mismatch" // The terminal does not belong to the merchant
	CardExpired              = "card_expired"               // The card has expired
	HoldExpired              = "hold_expired"               // The hold has expired
	RiskDeclined             = "risk_declined"              // Declined by risk control
	Denylisted               = "denylisted"                 // The card is on the transit deny list
	PINTriesExceeded         = "pin_tries_exceeded"         // Too many incorrect PINs: the card's bank has locked its PIN
	BankDeclined             = "bank_declined"              // The bank declined the card
	BankUnavailable          = "bank_unavailable"           // The bank did not answer in time; nothing was charged
	InsurerUnavailable       = "insurer_unavailable"        // The medical insurer did not answer in time; nothing was charged
	InsurerDeclined          = "insurer_declined"           // The medical insurer refused the settlement
	Interrupted              = "interrupted"                // The payment was interrupted and everything it did was undone
)
