"""Pure data: labels, matchers, samples, metadata. No I/O, no framework imports."""
