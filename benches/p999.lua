-- wrk hook used by benches/pair.sh: after a run, also print the 99.9th latency percentile
-- (wrk's --latency stops at 99 %) from the same histogram wrk keeps, in microseconds.
-- Only done() is defined, so wrk runs no Lua per request.
done = function(summary, latency, requests)
  io.write(string.format("p99.9 latency us: %d\n", latency:percentile(99.9)))
end
