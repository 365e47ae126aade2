// Command esscd is the essc server: the composition root that reads the
// configuration, opens the backends, wires the handlers and serves.
package main

func main() {}
