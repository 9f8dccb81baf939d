// The sign-in form: POST the credentials as JSON, then go to the page asked for.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  translate();
  setupLanguageSwitch();
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const response = await fetch("/console/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({
        username: document.getElementById("username").value.trim(),
        password: document.getElementById("password").value,
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      error.textContent = response.status === 429
        ? t("login.locked", { s: (body.details || {}).retry_after || "?" })
        : t("login.failed");
      error.hidden = false;
      return;
    }
    const next = new URLSearchParams(location.search).get("next");
    // Only a path of this console: never a redirect to another site.
    location.href = next && /^\/(console\/[a-z]+|reports)$/.test(next) ? next : body.home;
  });
});
