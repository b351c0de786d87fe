// Command devstack runs the whole of breakglass on loopback for development
// and demos: `make run`. It prints the URL to open, and Ctrl-C stops every
// process and removes the temporary folder with the generated keys.
package main
