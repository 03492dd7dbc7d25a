/**
 * The parsers of the load tools' output, on output recorded from the Debian tools on this
 * machine (sockperf 3.7, wrk 4.1.0 with the bench's Lua script, h2load 1.52, iperf3 3.12,
 * bench/connrate.c), and the statistics helpers.
 */
import { describe, expect, it } from 'vitest';
import { parseConnrate, parseH2load, parseIperf3, parseSockperf, parseWrk } from '../../bench/tools.js';
import { median, percentile, ratio, spread } from '../../bench/stats.js';

const SOCKPERF = `sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m
sockperf: [Total Run] RunTime=1.000 sec; Warm up time=400 msec; SentMessages=60655; ReceivedMessages=60654
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=33328; ReceivedMessages=33328
sockperf: \x1b[2;35m====> avg-rtt=16.481 (std-dev=27.018)\x1b[0m
sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0
sockperf: Summary: Round trip is 16.481 usec
sockperf: \x1b[2;35mTotal 33328 observations\x1b[0m; each percentile contains 333.28 observations
sockperf: ---> <MAX> observation = 4430.879
sockperf: ---> percentile 99.999 = 4430.879
sockperf: ---> percentile 99.990 =  147.338
sockperf: ---> percentile 99.900 =   93.899
sockperf: ---> percentile 99.000 =   26.008
sockperf: ---> percentile 90.000 =   18.597
sockperf: ---> percentile 75.000 =   17.395
sockperf: ---> percentile 50.000 =   15.963
sockperf: ---> percentile 25.000 =   13.620
sockperf: ---> <MIN> observation =   13.229
`;

const WRK = `Running 1s test @ http://127.0.0.1:8080/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    94.75us  294.22us   4.20ms   97.29%
    Req/Sec    54.88k     4.51k   59.73k    80.00%
  Latency Distribution
     50%   52.00us
     75%   59.00us
     90%   71.00us
     99%    1.71ms
  54435 requests in 1.01s, 7.79MB read
Requests/sec:  54146.51
Transfer/sec:      7.75MB
kw-percentile 50 52
kw-percentile 90 71
kw-percentile 99 1705
kw-percentile 99.9 3544
kw-summary requests=54435 non2xx=0 connect=0 read=2 write=0 timeout=1
`;

const H2LOAD = `finished in 1.00s, 2000.00 req/s, 134.89KB/s
requests: 2001 total, 2002 started, 2001 done, 2000 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx
`;

describe('tool output parsers', () => {
  it('sockperf: round-trip percentiles in microseconds, colour codes ignored', () => {
    expect(parseSockperf(SOCKPERF)).toEqual({ p50: 15.963, p90: 18.597, p99: 26.008, p999: 93.899, avg: 16.481, observations: 33328 });
  });

  it('sockperf: output without percentiles is an error naming the tool', () => {
    expect(() => parseSockperf('sockperf: ERROR: connect() failed')).toThrow(/sockperf: no percentile 50.000/);
  });

  it('wrk: requests/s, the Lua script percentiles (p99.9 included) and errors', () => {
    expect(parseWrk(WRK)).toEqual({ rps: 54146.51, p50: 52, p90: 71, p99: 1705, p999: 3544, max: 4200, requests: 54435, errors: 3 });
  });

  it('wrk: falls back to --latency lines (ms converted) when the script output is missing', () => {
    const plain = WRK.split('\n').filter((l) => !l.startsWith('kw-')).join('\n');
    const s = parseWrk(plain);
    expect(s.p99).toBe(1710);
    expect(s.p999).toBeNaN();
  });

  it('h2load: summary for rate and errors, the per-request log for percentiles', () => {
    const log = Array.from({ length: 1000 }, (_, i) => `1795306221604930\t200\t${i + 1}`).join('\n') + '\n1795306221604930\t503\t999999\n';
    expect(parseH2load(H2LOAD, log)).toEqual({ rps: 2000, p50: 500, p90: 900, p99: 990, p999: 999, max: 1000, requests: 2000, errors: 2 });
  });

  it('h2load: a log without successful requests is an error', () => {
    expect(() => parseH2load(H2LOAD, '')).toThrow(/no successful request/);
  });

  it('iperf3 -J: received Gbit/s and retransmits; an iperf3 error is reported', () => {
    expect(parseIperf3(JSON.stringify({ end: { sum_received: { bits_per_second: 9.61e9 }, sum_sent: { retransmits: 6 } } }))).toEqual({ gbps: 9.61, retransmits: 6 });
    expect(() => parseIperf3(JSON.stringify({ error: 'unable to connect to server: Connection refused' }))).toThrow(/Connection refused/);
  });

  it('connrate: its JSON line', () => {
    const out = '{"connections":4011,"errors":{"connect":1,"io":2,"response":0},"seconds":1.000,"threads":2,"rate":4010.0,"p50_us":180,"p90_us":676,"p99_us":5733,"p999_us":12202}\n';
    expect(parseConnrate(out)).toEqual({ rate: 4010, connections: 4011, errors: 3, p50: 180, p90: 676, p99: 5733, p999: 12202 });
  });
});

describe('statistics', () => {
  it('nearest-rank percentiles and medians', () => {
    const s = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(s, 50)).toBe(5);
    expect(percentile(s, 90)).toBe(9);
    expect(percentile(s, 99.9)).toBe(10);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([Number.NaN, 1])).toBe(1);
  });

  it('spread of a per-round value: median, min, max, rounds kept in order', () => {
    expect(spread([0.8, 0.7, Number.NaN, 0.9])).toEqual({ median: 0.8, min: 0.7, max: 0.9, rounds: [0.8, 0.7, Number.NaN, 0.9] });
    expect(ratio(1, 0)).toBeNaN();
    expect(ratio(3, 4)).toBe(0.75);
  });
});
