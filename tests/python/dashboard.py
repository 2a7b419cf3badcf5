"""Drive the dashboard in headless Chromium and print what it shows, as JSON.

Usage: dashboard.py <base-url> <table> <from> <to> <interval> <sql> <bad-sql> [screenshot.png]

Opens <base-url>/dashboard on the given range, waits for the charts and the
tenant list, reads every drawn point and bar (their values and positions),
the legend and the tenant rows; then changes the interval in the form and
reads the growth chart again; then runs <sql> and <bad-sql> in the SQL box.
The test compares all of it with what it wrote.
"""

import json
import sys
import urllib.parse

from browser import chromium
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

base, table, start, end, interval, sql, bad_sql = sys.argv[1:8]
screenshot = sys.argv[8] if len(sys.argv) > 8 else None

driver = chromium()
wait = WebDriverWait(driver, 60)


def body_state(name, wanted):
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute(f"data-{name}") in wanted)
    return driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{name}")


def number(text):
    return float(text) if text is not None else None


def growth():
    svg = driver.find_element(By.ID, "growth")
    points = [
        {
            "tenant": c.get_attribute("data-tenant"),
            "at": c.get_attribute("data-at"),
            "value": number(c.get_attribute("data-value")),
            "cy": number(c.get_attribute("cy")),
            "title": c.find_element(By.TAG_NAME, "title").get_attribute("textContent"),
        }
        for c in svg.find_elements(By.CSS_SELECTOR, "circle.point")
    ]
    legend = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#growth-legend .legend-item")]
    return {"yMax": number(svg.get_attribute("data-y-max")), "points": points, "legend": legend}


def activity():
    svg = driver.find_element(By.ID, "activity")
    bars = [
        {
            "tenant": r.get_attribute("data-tenant"),
            "at": r.get_attribute("data-at"),
            "op": r.get_attribute("data-op"),
            "value": number(r.get_attribute("data-value")),
            "height": number(r.get_attribute("height")),
        }
        for r in svg.find_elements(By.CSS_SELECTOR, "rect.bar")
    ]
    totals = driver.find_element(By.ID, "activity-totals").text
    return {"yMax": number(svg.get_attribute("data-y-max")), "bars": bars, "totals": totals}


def run_sql(text):
    box = driver.find_element(By.ID, "sql")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "run").click()
    state = body_state("sql", ("ready", "error"))
    rows = [
        [cell.text for cell in tr.find_elements(By.CSS_SELECTOR, "th, td")]
        for tr in driver.find_elements(By.CSS_SELECTOR, "#result tr")
    ]
    return {
        "state": state,
        "rows": rows,
        "status": driver.find_element(By.ID, "sql-status").text,
        "error": driver.find_element(By.ID, "sql-error").text,
    }


try:
    query = urllib.parse.urlencode({"table": table, "from": start, "to": end, "interval": interval})
    driver.get(f"{base}/dashboard?{query}")
    result = {"charts": body_state("charts", ("ready", "error")), "tenantsState": body_state("tenants", ("ready", "unavailable"))}
    result["rangeStatus"] = driver.find_element(By.ID, "range-status").text
    result["growth"] = growth()
    result["activity"] = activity()
    result["tenants"] = [
        {
            "tenant": tr.get_attribute("data-tenant"),
            "bytes": int(tr.get_attribute("data-bytes")),
            "tier": tr.find_element(By.CSS_SELECTOR, "td.tier").text,
            "size": tr.find_element(By.CSS_SELECTOR, "td.size").text,
            "lake": tr.find_element(By.CSS_SELECTOR, "td.lake").text,
            "lsn": tr.find_element(By.CSS_SELECTOR, "td.lsn").text,
        }
        for tr in driver.find_elements(By.CSS_SELECTOR, "#tenants tbody tr")
    ]
    result["freshness"] = driver.find_element(By.ID, "freshness").text
    if screenshot:
        driver.save_screenshot(screenshot)

    # Choose another range in the form, as a user would.
    Select(driver.find_element(By.ID, "interval")).select_by_visible_text("1 day")
    driver.find_element(By.ID, "show").click()
    wait.until(lambda d: "interval=1+day" in d.current_url)
    body_state("charts", ("ready",))
    result["growthByDay"] = growth()

    result["sql"] = run_sql(sql)
    result["badSql"] = run_sql(bad_sql)
finally:
    driver.quit()
print(json.dumps(result))
