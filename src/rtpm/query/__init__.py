"""Query: PromQL evaluation and the seed's JSON query shapes."""
