"""Sign in to the dashboard with a token in headless Chromium, as a user of
a server with auth on would, and print what the page shows, as JSON.

Usage: dashboard_signin.py <base-url> <token> <sql>

Opens <base-url>/dashboard without a token (the page asks for one), signs
in, reads the tables offered and the tenant list's state, runs <sql> in the
SQL box, looks where the token is kept, then signs out.
"""

import json
import sys

from browser import chromium
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

base, token, sql = sys.argv[1:4]
driver = chromium()
wait = WebDriverWait(driver, 60)


def body(name):
    return driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{name}")


try:
    result = {}
    driver.get(f"{base}/dashboard")
    wait.until(lambda d: body("auth") == "needed")
    result["before"] = body("auth")
    result["formShown"] = driver.find_element(By.ID, "signin").is_displayed()
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin button").click()
    wait.until(lambda d: body("tenants") in ("ready", "unavailable") and body("charts") in ("ready", "error"))
    result["after"] = body("auth")
    result["tables"] = [o.text for o in Select(driver.find_element(By.ID, "table")).options]
    result["tenantsState"] = body("tenants")
    result["charts"] = body("charts")
    result["tenantsInGrowth"] = sorted({c.get_attribute("data-tenant") for c in driver.find_elements(By.CSS_SELECTOR, "#growth circle")})
    box = driver.find_element(By.ID, "sql")
    box.clear()
    box.send_keys(sql)
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: body("sql") in ("ready", "error"))
    result["sql"] = [[cell.text for cell in tr.find_elements(By.CSS_SELECTOR, "th, td")] for tr in driver.find_elements(By.CSS_SELECTOR, "#result tr")]
    result["sqlError"] = driver.find_element(By.ID, "sql-error").text
    result["sessionStorage"] = driver.execute_script("return sessionStorage.getItem('tidelake.token')") == token
    result["localStorage"] = driver.execute_script("return localStorage.length")
    result["signOutShown"] = driver.find_element(By.ID, "signout").is_displayed()
    driver.find_element(By.ID, "signout").click()
    wait.until(lambda d: body("auth") == "needed")
    result["afterSignOut"] = body("auth")
finally:
    driver.quit()
print(json.dumps(result))
