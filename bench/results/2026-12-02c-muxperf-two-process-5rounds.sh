#!/bin/bash
# 5 rounds, every implementation once per round, two processes on loopback
for r in 1 2 3 4 5; do
  for im in ours hashicorp libp2p smux tcp; do
    /tmp/muxperf -listen 127.0.0.1:5304 -impl $im -q > /tmp/mp-srv.log 2>&1 & sp=$!
    sleep 0.5
    echo "round $r $(/tmp/muxperf -connect 127.0.0.1:5304 -tests bulk,streams,rpc -d 5s -q 2>&1 | grep -E "^$im ")"
    kill $sp; wait $sp 2>/dev/null
  done
done
