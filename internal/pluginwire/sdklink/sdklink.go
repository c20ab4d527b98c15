// Package sdklink is the one seam through which package sdk lends its
// unexported protocol code (conversions, validation, the plugin's server)
// to internal/pluginwire. Package sdk cannot import pluginwire, which is
// built on sdk's types, and must not export that code to plugin authors;
// so sdk stores it here in its init and pluginwire takes it out, typed,
// once. Nothing else may use this package.
package sdklink

// Internals holds package sdk's internals once sdk is initialised: a value
// that internal/pluginwire asserts to its own interface.
var Internals any
