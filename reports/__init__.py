"""reports: what the project shows people, above the model and below the commands:
the HTML page shell (`reports.html_page`), a data set's card (`reports.card`), the
training run's plots (`reports.plots`), prediction's pictures
(`reports.prediction_plots`) and ingest's age/gender histogram (`reports.age_gender`)."""
