// Faísca UI: keeps a page current by polling the REST API (no long-lived connections).
(function () {
  "use strict";
  const body = document.body;
  const api = body.dataset.api;
  const base = body.dataset.base || "";
  const page = body.dataset.page;
  const POLL_MS = 1000;

  function esc(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function duration(ms) {
    if (ms == null) return "";
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    if (ms < 3600000) return (ms / 60000).toFixed(1) + " min";
    return (ms / 3600000).toFixed(1) + " h";
  }
  function bytes(n) {
    n = n || 0;
    if (n < 1024) return n + " B";
    const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let v = n / 1024, u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return v.toFixed(1) + " " + units[u];
  }
  function epoch(sparkTime) {
    return sparkTime ? Date.parse(sparkTime.replace("GMT", "Z")) : null;
  }
  function clock(sparkTime) {
    return sparkTime ? sparkTime.substring(11, 19) : "";
  }
  function progress(done, total) {
    const percent = total === 0 ? 100 : Math.floor(done * 100 / total);
    return '<span class="progress"><span class="bar" style="width:' + percent + '%"></span><span class="label">' + done + "/" + total + "</span></span>";
  }
  async function get(path) {
    const response = await fetch(api + path, { cache: "no-store" });
    if (!response.ok) throw new Error(path + ": " + response.status);
    return response.json();
  }
  function poll(step) {
    let stopped = false;
    async function tick() {
      try {
        stopped = (await step()) === false;
      } catch (e) {
        // A restarting driver or a dropped connection: try again on the next tick.
      }
      if (!stopped && body.dataset.live === "true") setTimeout(tick, POLL_MS);
    }
    if (body.dataset.live === "true") setTimeout(tick, POLL_MS);
  }
  function jobDuration(job) {
    const start = epoch(job.submissionTime);
    const end = job.completionTime ? epoch(job.completionTime) : Date.now();
    return end - start;
  }

  function jobRow(job) {
    return '<tr data-job-id="' + job.jobId + '"><td><a href="' + base + "/jobs/job/?id=" + job.jobId + '">' + job.jobId + "</a></td>" +
      '<td class="description" title="' + esc(job.description || job.name) + '">' + esc(job.description || job.name) + "</td>" +
      "<td>" + clock(job.submissionTime) + '</td><td class="duration">' + duration(jobDuration(job)) + "</td>" +
      '<td class="status">' + job.status + '</td><td class="stages">' + progress(job.numCompletedStages, job.stageIds.length) + "</td>" +
      '<td class="tasks">' + progress(job.numCompletedTasks, job.numTasks) + "</td></tr>";
  }

  function jobsPage() {
    poll(async function () {
      const jobs = await get("/jobs");
      for (const status of ["running", "succeeded", "failed"]) {
        const rows = jobs.filter(function (j) { return j.status.toLowerCase() === status; });
        document.querySelector("#jobs-" + status + " tbody").innerHTML = rows.map(jobRow).join("");
        document.getElementById("count-" + status).textContent = rows.length;
      }
    });
  }

  function stageRow(stage) {
    const start = epoch(stage.submissionTime);
    const end = stage.completionTime ? epoch(stage.completionTime) : Date.now();
    return '<tr data-stage-id="' + stage.stageId + '"><td><a href="' + base + "/stages/stage/?id=" + stage.stageId + '">' + stage.stageId + "</a></td>" +
      '<td><a href="' + base + "/jobs/job/?id=" + stage.jobIds[0] + '">' + stage.jobIds[0] + "</a> / " + stage.jobStageIndex + "</td>" +
      '<td class="status">' + stage.status + '</td><td class="tasks">' + progress(stage.numCompletedIndices, stage.numTasks) + "</td>" +
      '<td class="duration">' + (start ? duration(end - start) : "") + '</td><td class="rows">' + stage.outputRecords + "</td>" +
      '<td class="bytes">' + bytes(stage.outputBytes) + "</td><td>" + esc(stage.description) + "</td></tr>";
  }

  function jobPage() {
    const id = body.dataset.jobId;
    poll(async function () {
      const job = await get("/jobs/" + id);
      const stages = await Promise.all(job.stageIds.map(function (s) { return get("/stages/" + s + "?details=false"); }));
      document.getElementById("job-status").textContent = job.status;
      document.getElementById("job-duration").textContent = duration(jobDuration(job));
      document.getElementById("job-tasks").innerHTML = progress(job.numCompletedTasks, job.numTasks);
      const rows = [];
      for (const attempts of stages) {
        const stage = attempts[0];
        rows.push(stageRow(stage));
        const box = document.querySelector('#dag g.stage[data-stage-id="' + stage.stageId + '"]');
        if (box) {
          box.setAttribute("class", "stage " + stage.status.toLowerCase());
          const title = box.querySelector("text.title");
          if (title) title.textContent = "Stage " + stage.jobStageIndex + " · id " + stage.stageId + " · " + stage.status.toLowerCase();
          const counts = box.querySelector("text.counts");
          if (counts) counts.textContent = stage.numCompletedIndices + "/" + stage.numTasks + " tasks · out " + stage.description;
        }
        document.querySelectorAll('#dag g.edge[data-from="' + stage.stageId + '"] text').forEach(function (label) {
          label.textContent = stage.outputRecords + " rows · " + bytes(stage.outputBytes);
        });
      }
      document.querySelector("#stages tbody").innerHTML = rows.join("");
      return job.status === "RUNNING";
    });
  }

  function taskRow(t) {
    const m = t.taskMetrics;
    return '<tr data-task-id="' + t.taskId + '"><td>' + t.taskId + "</td><td>" + t.index + "</td><td>" + t.attempt + '</td><td class="status">' + t.status + "</td>" +
      "<td>" + esc(t.executorId) + "</td><td>" + clock(t.launchTime) + "</td><td>" + duration(t.duration) + "</td>" +
      "<td>" + m.outputMetrics.recordsWritten + "</td><td>" + bytes(m.outputMetrics.bytesWritten) + "</td><td>" + bytes(m.inputMetrics.bytesRead) + "</td>" +
      "<td>" + bytes(m.shuffleReadMetrics.remoteBytesRead) + "</td><td>" + duration(m.shuffleReadMetrics.fetchWaitTime) + "</td>" +
      "<td>" + bytes(m.memoryBytesSpilled) + '</td><td class="error">' + esc(t.errorMessage) + "</td>" +
      '<td><a class="log" href="' + esc(body.dataset.base) + "/stages/stage/log/?id=" + body.dataset.stageId + "&amp;taskId=" + t.taskId + '">log</a></td></tr>';
  }

  function stagePage() {
    const id = body.dataset.stageId;
    poll(async function () {
      const stage = await get("/stages/" + id + "/0");
      document.getElementById("stage-status").textContent = stage.status;
      document.getElementById("stage-tasks").innerHTML = progress(stage.numCompletedIndices, stage.numTasks);
      const tasks = Object.values(stage.tasks).sort(function (a, b) { return a.taskId - b.taskId; });
      document.querySelector("#tasks tbody").innerHTML = tasks.map(taskRow).join("");
      return stage.status === "ACTIVE" || stage.status === "PENDING";
    });
  }

  function stagesPage() {
    poll(async function () {
      const stages = await get("/stages");
      document.querySelector("#stages tbody").innerHTML = stages.map(stageRow).join("");
    });
  }

  function executorsPage() {
    poll(async function () {
      const executors = await get("/allexecutors");
      document.querySelector("#executors tbody").innerHTML = executors.map(function (e) {
        return '<tr data-executor-id="' + esc(e.id) + '"><td>' + esc(e.id) + "</td><td>" + esc(e.hostPort) + '</td><td class="state">' + (e.isActive ? "active" : "dead") + "</td>" +
          "<td>" + e.totalCores + "</td><td>" + bytes(e.memoryUsed) + " / " + bytes(e.maxMemory) + "</td><td>" + e.activeTasks + "</td><td>" + e.completedTasks + "</td>" +
          "<td>" + e.failedTasks + "</td><td>" + duration(e.totalDuration) + "</td><td>" + bytes(e.shuffleBytesHeld) + "</td><td>" + clock(e.lastHeartbeat) + "</td>" +
          "<td>" + esc(e.removeReason) + "</td></tr>";
      }).join("");
    });
  }

  function batchRow(p) {
    return '<tr data-batch-id="' + esc(p.batchId) + '"><td>' + esc(p.batchId) + "</td><td>" + esc(p.timestamp) + "</td><td>" + esc(p.numInputRows) + "</td>" +
      "<td>" + (p.inputRowsPerSecond || 0).toFixed(1) + "</td><td>" + (p.processedRowsPerSecond || 0).toFixed(1) + "</td>" +
      "<td>" + duration((p.durationMs || {}).triggerExecution || 0) + "</td></tr>";
  }

  function stateOf(p) {
    return (p.stateOperators || []).map(function (o) {
      return (o.numRowsTotal || 0) + " rows, " + bytes(o.memoryUsedBytes);
    }).join("; ");
  }

  function streamingPage() {
    poll(async function () {
      const queries = await get("/streaming/queries");
      if (queries.length !== document.querySelectorAll("section.query").length) {
        location.reload();
        return false;
      }
      for (const q of queries) {
        const section = document.querySelector('section.query[data-run-id="' + q.runId + '"]');
        if (!section) {
          location.reload();
          return false;
        }
        const set = function (selector, text) {
          const element = section.querySelector(selector);
          if (element) element.textContent = text;
        };
        set("dd.status", q.isActive ? "ACTIVE" : (q.exception ? "FAILED" : "STOPPED"));
        const last = q.lastProgress;
        if (last) {
          set("dd.batch", last.batchId);
          set("dd.input-rate", (last.inputRowsPerSecond || 0).toFixed(1) + " rows/s");
          set("dd.process-rate", (last.processedRowsPerSecond || 0).toFixed(1) + " rows/s");
          set("dd.watermark", (last.eventTime || {}).watermark || "");
          set("dd.state", stateOf(last));
        }
        section.querySelector("table.batches tbody").innerHTML = q.recentProgress.slice().reverse().map(batchRow).join("");
      }
    });
  }

  const pages = { jobs: jobsPage, job: jobPage, stage: stagePage, stages: stagesPage, executors: executorsPage, streaming: streamingPage };
  if (pages[page]) pages[page]();
})();
