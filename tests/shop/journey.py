"""The test shop's buyer journey as a scenario's ``[journey]`` (TOML), shared by the engine's and
Locust's tests against the shop: login → Bearer token and session cookie → order with business
codes in HTTP 200 bodies → poll the order until DONE → pay half of the time; and the audit's
query of what the shop sold."""

SOLD = "SELECT sku, SUM(qty) FROM orders GROUP BY sku"

JOURNEY = """
[journey]
order_step = "order"

[[journey.steps]]
name = "login"
path = "/api/v1/login"
body = '{"user_id":"u{user_id}"}'
extract = { token = { json = "data.token" }, sid = { cookie = "sid" } }
[journey.steps.outcome]
path = "code"
values = { "0" = "confirmed" }

[[journey.steps]]
name = "order"
path = "/api/v1/seckill/{goods_id}/order"
headers = { Authorization = "Bearer {token}" }
body = '{"qty":{qty}}'
think_s = [0.0, 0.05]
extract = { ref = { header = "X-Order-Ref" }, ref_body = { json = "data.order_ref" } }
[journey.steps.outcome]
path = "code"
values = { "0" = "confirmed", "1001" = "sold_out", "1002" = "rejected", "401" = "error" }

[[journey.steps]]
name = "poll"
method = "GET"
path = "/api/v1/orders/{ref}?check={ref_body}"
headers = { Authorization = "Bearer {token}" }
poll = { json = "data.state", until = ["DONE", "PAID"], every_s = 0.05, max = 5 }

[[journey.steps]]
name = "pay"
path = "/api/v1/orders/{ref}/pay"
probability = 0.5
think_s = { mean = 0.05 }
[journey.steps.outcome]
path = "code"
values = { "0" = "confirmed", "401" = "rejected" }
"""
