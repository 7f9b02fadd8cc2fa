// Submits the form_post response form at once; without JavaScript the
// visible button does the same (OAuth 2.0 Form Post Response Mode §2).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("form-post");
  if (form) { form.submit(); }
});
