// Command hello stands in for sluice in the image builder's tests: a small
// static binary that builds in seconds for any GOARCH.
package main

import "fmt"

func main() { fmt.Println("hello from the image") }
