package cardcrypto

// isDigits reports whether s is non-empty and all ASCII decimal digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// luhnSum is the Luhn weighted sum of digits, doubling every second digit
// counting from the right when doubleRightmost is false, or from the rightmost
// digit itself when it is true (as when a check digit is still to come).
func luhnSum(digits string, doubleRightmost bool) int {
	sum := 0
	double := doubleRightmost
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum
}

// LuhnValid reports whether digits (check digit included) pass the Luhn
// (mod 10) check. Anything that is not all decimal digits is invalid.
func LuhnValid(digits string) bool {
	if len(digits) < 2 || !isDigits(digits) {
		return false
	}
	return luhnSum(digits, false)%10 == 0
}

// LuhnCheckDigit returns the check digit to append to partial.
func LuhnCheckDigit(partial string) (byte, error) {
	if !isDigits(partial) {
		return 0, newErr("LuhnCheckDigit", ErrInvalidData, "input must be decimal digits")
	}
	return byte('0' + (10-luhnSum(partial, true)%10)%10), nil
}
