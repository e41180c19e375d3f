package main

// Sections whose packages have not landed yet measure nothing.

func poolMetrics() []metric { return nil }
