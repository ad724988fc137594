"""What bench/compare.py measures, by name: the payloads, the thread counts, and the
subjects in the order of the table's rows (the names are the rows' labels and the keys of
the JSON)."""

PAYLOADS = ("50 B", "100 KB")
THREADS = (1, 2, 8)

FLOOR = "floor: raw socket -> node:http echo"
DIRECT = "js-host: Function.call -> host"
PROXY_HIT = "js-host: Function.call -> proxy, hit"
PROXY_MISS = "js-host: Function.call -> proxy, miss"
PROXY_STALE = "js-host: Function.call -> proxy, stale while revalidating"
LOCAL_HIT = "js-host: Function.call, local cache hit"
GUNICORN_FLOOR = "gunicorn floor: constant answer, proxy's worker"
NGINX_HIT = "nginx proxy_cache, hit"
NGINX_MISS = "nginx proxy_cache, miss"
LEGACY = "2015: js-host 0.2.0 + npm 0.12"
EXECJS = "PyExecJS (node per call)"
RACER = "mini-racer (in-process V8)"
ORDER = [
    FLOOR,
    DIRECT,
    LOCAL_HIT,
    PROXY_HIT,
    PROXY_MISS,
    PROXY_STALE,
    GUNICORN_FLOOR,
    NGINX_HIT,
    NGINX_MISS,
    LEGACY,
    EXECJS,
    RACER,
]
