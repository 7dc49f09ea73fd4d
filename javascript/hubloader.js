// Model Hub tab (A1111/Forge): refresh the downloads table while downloads run.
// gradio 3.41 (A1111 1.10) has no gr.Timer, so the page polls our route and clicks the tab's own
// Refresh button when the queue changes; on Forge (gradio 4.40) the Timer does it and this is harmless.
(function () {
    "use strict";
    let last = "";

    async function poll() {
        const app = typeof gradioApp === "function" ? gradioApp() : document;
        const button = app.querySelector("#hubloader_jobs_refresh");
        if (!button || button.offsetParent === null) return; // tab not shown
        try {
            const response = await fetch("/hubloader/downloads", { credentials: "same-origin" });
            if (!response.ok) return;
            const body = await response.json();
            const now = JSON.stringify(body.downloads.map((j) => [j.id, j.state, j.done_bytes]));
            if (now !== last) {
                last = now;
                button.click();
            }
        } catch (error) {
            // the server restarting: try again on the next tick
        }
    }

    setInterval(poll, 1500);
})();
